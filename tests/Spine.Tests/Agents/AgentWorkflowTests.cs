using Spine.Agents;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Agents;

[Collection(ClusterCollection.Name)]
public sealed class AgentWorkflowTests(ClusterFixture fixture)
{
    [Fact]
    public async Task Agent_ScriptedModel_EachTurnAndToolCallIsOneJournaledStep()
    {
        var run = await fixture.Client.StartAsync("agent", new AgentInput("What is (1200 + 34) * 3?", Tools: ["calculator", "text_stats", "notes_append"]));

        var output = await fixture.Client.GetResultAsync<AgentOutput>(run.RunId);

        Assert.Equal(4, output.Turns);
        Assert.Equal(["calculator", "text_stats", "notes_append"], output.ToolCalls.Select(c => c.Tool));
        Assert.All(output.ToolCalls, c => Assert.True(c.Ok));
        Assert.Equal(3702, output.ToolCalls[0].Result.GetProperty("value").GetDouble());
        Assert.True(output.InputTokens > 0);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "Model", "Tool", "Model", "Tool", "Model", "Tool", "Model", "RunCompleted"], journal.Select(r => r.Kind));
        Assert.Equal(1L, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_notes WHERE run_id = @id", ("id", run.RunId)));
        Assert.True((await fixture.Client.VerifyJournalAsync(run.RunId)).Intact);
    }

    [Fact]
    public async Task Agent_ModelCallsUnknownToolAndBreaksSchema_ErrorsGoBackToModelAndRunCompletes()
    {
        var run = await fixture.Client.StartAsync("agent", new AgentInput("anything", Tools: ["calculator"], ChatClient: "misbehaving"));

        var output = await fixture.Client.GetResultAsync<AgentOutput>(run.RunId);

        Assert.Equal("recovered", output.Answer);
        Assert.Equal(3, output.ToolCalls.Count);
        Assert.False(output.ToolCalls[0].Ok);
        Assert.Equal("unknown_tool", output.ToolCalls[0].Result.GetProperty("error").GetString());
        Assert.False(output.ToolCalls[1].Ok);
        Assert.Equal("schema_validation", output.ToolCalls[1].Result.GetProperty("error").GetString());
        Assert.Contains("expression", output.ToolCalls[1].Result.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.True(output.ToolCalls[2].Ok);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["error", "error", "ok"], journal.Where(r => r.Kind == "Tool").Select(r => r.Outcome));
    }

    [Fact]
    public async Task Agent_ModelRateLimited_TurnRetriedAsTransientAndJournaled()
    {
        var prompt = "limit " + Guid.NewGuid();
        var run = await fixture.Client.StartAsync("agent", new AgentInput(prompt, Tools: [], ChatClient: "rate-limited"));

        var output = await fixture.Client.GetResultAsync<AgentOutput>(run.RunId);

        Assert.Equal("after the rate limit", output.Answer);
        Assert.Equal(2, RateLimitedChatClient.Calls(prompt));
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "AttemptFailed", "Model", "RunCompleted"], journal.Select(r => r.Kind));
        Assert.Contains("\"class\":\"transient\"", journal[1].PayloadJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Agent_DeactivatedDuringToolCall_ReplaysModelTurnAndRetriesCallWithSameKey()
    {
        var prompt = "gate " + Guid.NewGuid();
        var run = await fixture.Client.StartAsync("agent", new AgentInput(prompt, Tools: ["test_gate"], ChatClient: "gatekeeper"));
        await Eventually.GetAsync(() => Task.FromResult(GateTool.Keys(run.RunId).Count), n => n == 1, TimeSpan.FromSeconds(30), "the tool call to start");

        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var output = await fixture.Client.GetResultAsync<AgentOutput>(run.RunId);

        Assert.Equal("passed", output.Answer);
        Assert.Equal(2, GatekeeperChatClient.Calls(prompt));
        var keys = GateTool.Keys(run.RunId);
        Assert.Equal(2, keys.Count);
        Assert.Equal(keys[0], keys[1]);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "Model", "Tool", "Model", "RunCompleted"], journal.Select(r => r.Kind));
    }

    [Fact]
    public async Task Agent_NamingNoTools_IsOfferedNone()
    {
        var run = await fixture.Client.StartAsync("agent", new AgentInput("What is 6 * 7?"));

        var output = await fixture.Client.GetResultAsync<AgentOutput>(run.RunId);

        // Every demo tool is registered on the test silos, yet the model was offered none of them.
        Assert.Equal(1, output.Turns);
        Assert.Empty(output.ToolCalls);
    }
}
