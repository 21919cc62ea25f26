using Spine.Hosting;
using Spine.Tools;

namespace Spine.Tests.Infrastructure;

/// <summary>
/// Settings of every silo on the tests' shared database. Runs other tests left in flight there pin tools a silo of
/// another test does not register, which would (rightly) refuse its start: those silos start anyway. The refusal
/// itself is tested on databases of its own (ToolCatalogTests).
/// </summary>
public static class TestSpine
{
    public const string SharedDatabaseSetting = "Spine:Tools:MissingPinnedVersions";

    public const string SharedDatabaseVariable = "Spine__Tools__MissingPinnedVersions";

    public const string SharedDatabaseValue = nameof(MissingPinnedVersions.Start);

    public static void OnSharedDatabase(SpineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Tools.MissingPinnedVersions = MissingPinnedVersions.Start;
    }
}
