using System.Text.Json;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Tools;

[Collection(ClusterCollection.Name)]
public sealed class ToolContractTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task CallToolAsync_ValidArguments_RecordsVersionInputAndOutput()
    {
        var run = await fixture.Client.StartAsync("test.tool", new { tool = "test_echo", arguments = new { x = 7 } });

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("{\"y\":\"7\"}", done.ResultJson);
        var row = (await fixture.Client.GetJournalAsync(run.RunId)).Single(r => r.Kind == "Tool");
        using var payload = JsonDocument.Parse(row.PayloadJson!);
        Assert.Equal("1.0.0", payload.RootElement.GetProperty("version").GetString());
        Assert.Equal(7, payload.RootElement.GetProperty("input").GetProperty("x").GetInt32());
    }

    [Theory]
    [InlineData("{\"x\":-1}", "/x")]
    [InlineData("{\"x\":\"seven\"}", "/x")]
    [InlineData("{}", "/")]
    [InlineData("{\"x\":1,\"extra\":true}", "/")]
    public async Task CallToolAsync_ArgumentsBreakInputSchema_FailsWithoutInvokingTool(string arguments, string location)
    {
        var run = await fixture.Client.StartAsync("test.tool", new { tool = "test_echo", arguments = JsonDocument.Parse(arguments).RootElement });

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("schema_validation", done.Error!.Kind);
        Assert.Contains("input does not match its schema", done.Error.Message, StringComparison.Ordinal);
        Assert.Contains(location, done.Error.Message, StringComparison.Ordinal);
        Assert.False(EchoTool.Invocations.ContainsKey(run.RunId));
    }

    [Fact]
    public async Task CallToolAsync_ToolBreaksOutputSchema_FailsWithOutputValidation()
    {
        var run = await fixture.Client.StartAsync("test.tool", new { tool = "test_echo", arguments = new { x = 13 } });

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("schema_validation", done.Error!.Kind);
        Assert.Contains("output does not match its schema", done.Error.Message, StringComparison.Ordinal);
        Assert.Equal(1, EchoTool.Invocations[run.RunId]);
        var row = (await fixture.Client.GetJournalAsync(run.RunId)).Single(r => r.Kind == "Tool");
        Assert.Equal("error", row.Outcome);
    }
}
