using System.Text.Json;
using NuGet.Versioning;
using Spine.Agents;
using Spine.Identity;
using Spine.Runs;
using Spine.Tests.Infrastructure;
using Spine.Tools;

namespace Spine.Tests.Tools;

/// <summary>Version ranges, and what a registry refuses as a breaking change within a major version.</summary>
public sealed class ToolVersionRangeTests
{
    [Theory]
    [InlineData("^1.2", "1.2.0", true)]
    [InlineData("^1.2", "1.9.3", true)]
    [InlineData("^1.2", "1.1.9", false)]
    [InlineData("^1.2", "2.0.0", false)]
    [InlineData("^1.2", "2.0.0-beta", false)]
    [InlineData("^0.2", "0.2.5", true)]
    [InlineData("^0.2", "0.3.0", false)]
    [InlineData("^0.0.3", "0.0.4", false)]
    [InlineData("~1.2.3", "1.2.9", true)]
    [InlineData("~1.2.3", "1.3.0", false)]
    [InlineData("~1", "1.9.0", true)]
    [InlineData("[1.0.0,2.0.0)", "1.5.0", true)]
    [InlineData("1.2.0", "7.0.0", true)]
    public void TryParseRange_TakesCaretTildeAndNuGetRanges(string text, string version, bool satisfied)
    {
        Assert.True(ToolVersions.TryParseRange(text, out var range));
        Assert.Equal(satisfied, range.Satisfies(NuGetVersion.Parse(version)));
    }

    [Theory]
    [InlineData("^")]
    [InlineData("^x")]
    [InlineData("^1.2.3.4")]
    [InlineData("~1..2")]
    [InlineData("banana")]
    [InlineData("")]
    public void TryParseRange_Malformed_IsRefused(string text) =>
        Assert.False(ToolVersions.TryParseRange(text, out _));

    [Fact]
    public void NewestIn_PrefersTheNewestStableVersion() =>
        Assert.Equal("1.5.0", ToolVersions.NewestIn(["1.2.0", "1.5.0", "1.6.0-rc.1", "2.0.0"], Range("^1.2")));

    [Theory]
    [InlineData("""{"type":"object","properties":{"q":{"type":"string"},"n":{"type":"integer"}},"required":["q","n"]}""", "'n' is newly required")]
    [InlineData("""{"type":"object","properties":{}}""", "'q' was removed")]
    [InlineData("""{"type":"object","properties":{"q":{"type":"integer"}}}""", "input /q: the type narrowed from string to integer")]
    [InlineData("""{"type":"object","properties":{"q":{"type":"string","maxLength":3}}}""", "maxLength tightened")]
    [InlineData("""{"type":"object","properties":{"q":{"type":"string","enum":["a","b"]}}}""", "no longer include")]
    public void Register_ABreakingChangeWithinAMajorVersion_IsRefusedNamingIt(string input, string expected)
    {
        var error = Assert.Throws<InvalidOperationException>(() => new ToolRegistry([Tool("1.0.0", Base), Tool("1.1.0", input)]));

        Assert.Contains("'lookup' 1.1.0 breaks the contract of 1.0.0", error.Message, StringComparison.Ordinal);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Contains("register it as 2.0.0", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Register_TheSameChangeAsANewMajorOrAPreRelease_OrACompatibleOne_IsAccepted()
    {
        const string breaking = """{"type":"object","properties":{"q":{"type":"integer"}},"required":["q"]}""";
        const string compatible = """{"type":"object","properties":{"q":{"type":["string","null"]},"n":{"type":"number"}}}""";

        var registry = new ToolRegistry([Tool("1.0.0", Base), Tool("1.1.0", compatible), Tool("2.0.0-beta", breaking), Tool("2.0.0", breaking)]);

        Assert.Equal(["1.0.0", "1.1.0", "2.0.0-beta", "2.0.0"], registry.VersionsOf("lookup"));
    }

    [Fact]
    public void Register_AnOutputPropertyDropped_IsRefused()
    {
        var older = Tool("1.0.0", Base, """{"type":"object","properties":{"hits":{"type":"array"},"total":{"type":"integer"}},"required":["hits","total"]}""");
        var newer = Tool("1.0.1", Base, """{"type":"object","properties":{"hits":{"type":"array"}},"required":["hits"]}""");

        var error = Assert.Throws<InvalidOperationException>(() => new ToolRegistry([older, newer]));

        Assert.Contains("output /: the property 'total' is no longer promised", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheDigest_IgnoresAnnotations_ButNotAPropertyNamedLikeOne()
    {
        var plain = Tool("1.0.0", """{"type":"object","properties":{"q":{"type":"string"}}}""").Definition;
        var described = Tool("1.0.0", """{"type":"object","title":"t","properties":{"q":{"type":"string","description":"what to find"}}}""").Definition;
        var named = Tool("1.0.0", """{"type":"object","properties":{"q":{"type":"string"},"description":{"type":"string"}}}""").Definition;

        Assert.Equal(ToolCatalog.Digest(plain), ToolCatalog.Digest(described));
        Assert.NotEqual(ToolCatalog.Digest(plain), ToolCatalog.Digest(named));
    }

    private const string Base = """{"type":"object","properties":{"q":{"type":"string"}}}""";

    private static VersionRange Range(string text) =>
        ToolVersions.TryParseRange(text, out var range) ? range : throw new ArgumentException(text);

    private static ITool Tool(string version, string input, string output = """{"type":"object"}""") => new SchemaTool(version, input, output);

    private sealed class SchemaTool(string version, string input, string output) : ITool
    {
        public ToolDefinition Definition { get; } = new()
        {
            Name = "lookup", Version = version, Description = "Looks up.", InputSchema = input, OutputSchema = output,
        };

        public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context) => Task.FromResult(arguments);
    }
}

/// <summary>A policy's version range on a real silo: which version a new run pins, and what the model is shown.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ToolVersionTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("caret", "1.5.0")]
    [InlineData(null, "2.0.0")]
    public async Task ANewRun_PinsTheNewestVersionItsPolicyRangeTakes_AndTheModelIsShownThatVersionsSchema(string? role, string pinned)
    {
        var prompt = $"versions {Guid.NewGuid():N}";
        var actor = role is null ? null : new SpineActor("carla", [role]);
        var run = await fixture.Client.StartAsync(new StartRunRequest("agent",
            JsonSerializer.Serialize(new AgentInput(prompt, Tools: [VersionedTool.Name], ChatClient: VersionRecordingChatClient.Key), Policies.SpineJsonForTests.Options), Actor: actor));

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        var versions = journal.Where(r => r.Kind == "Tool").Select(r => JsonDocument.Parse(r.PayloadJson!).RootElement.GetProperty("version").GetString()).ToList();
        Assert.Equal([pinned, pinned], versions);
        var shown = VersionRecordingChatClient.Shown[prompt].ToList();
        Assert.Equal(3, shown.Count);
        Assert.All(shown, s => Assert.StartsWith($"Looks things up (v{pinned}).", s, StringComparison.Ordinal));
        Assert.All(shown, s => Assert.Contains(pinned == "2.0.0" ? "\"required\":[\"q\",\"limit\"]" : "\"required\":[\"q\"]", s, StringComparison.Ordinal));
    }
}
