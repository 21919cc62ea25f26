using System.Text.Json;
using Spine.Errors;
using Spine.Tools;

namespace Spine.Tests.Tools;

/// <summary>Tool versions order as semantic versions.</summary>
public sealed class ToolRegistryTests
{
    [Fact]
    public void Resolve_NoVersion_TakesTheNewestStableVersionNotAPreReleaseOfIt()
    {
        var registry = new ToolRegistry([Versioned("2.0.0"), Versioned("2.0.0-beta"), Versioned("1.10.0"), Versioned("1.9.0")]);

        Assert.Equal("2.0.0", registry.Resolve("versioned", null).Definition.Version);
        Assert.Equal("2.0.0-beta", registry.Resolve("versioned", "2.0.0-beta").Definition.Version);
        Assert.Equal("2.0.0", Assert.Single(registry.Newest).Definition.Version);
    }

    [Fact]
    public void Resolve_OnlyPreReleases_TakesTheHighest_AndTenComesAfterNine()
    {
        var registry = new ToolRegistry([Versioned("3.0.0-rc.1"), Versioned("3.0.0-rc.10"), Versioned("3.0.0-rc.9")]);

        Assert.Equal("3.0.0-rc.10", registry.Resolve("versioned", null).Definition.Version);
    }

    [Theory]
    [InlineData("1.0")]
    [InlineData("v1.0.0")]
    [InlineData("1.0.0.0")]
    public void Register_NotASemanticVersion_FailsNamingTheTool(string version)
    {
        var error = Assert.Throws<InvalidOperationException>(() => new ToolRegistry([Versioned(version)]));

        Assert.Contains("'versioned'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Resolve_UnknownVersion_ThrowsUnknownTool()
    {
        var registry = new ToolRegistry([Versioned("1.0.0")]);

        Assert.Throws<UnknownToolException>(() => registry.Resolve("versioned", "1.0.1"));
    }

    private static ITool Versioned(string version) => new VersionedTool(version);

    private sealed class VersionedTool(string version) : ITool
    {
        public ToolDefinition Definition { get; } = new()
        {
            Name = "versioned",
            Version = version,
            Description = "A tool with a version.",
            InputSchema = """{"type":"object"}""",
            OutputSchema = """{"type":"object"}""",
        };

        public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context) => Task.FromResult(arguments);
    }
}
