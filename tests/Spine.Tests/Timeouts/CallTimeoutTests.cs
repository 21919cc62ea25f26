using System.Text.Json;
using Spine.Agents;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Timeouts;

/// <summary>Per-call timeouts and a run's cancel reach tools, models and steps through their cancellation tokens.</summary>
[Collection(ClusterCollection.Name)]
public sealed class CallTimeoutTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task ACancel_ReachesTheToolCallInFlight_WhoseStepIsThenCompensatedAsOfUnknownOutcome()
    {
        var run = await fixture.Client.StartAsync("test.book-then-call", new BookThenCall(HangTool.Name, "undo-hang"));
        await HangTool.Entered.GetOrAdd(run.RunId, _ => new(TaskCreationOptions.RunContinuationsAsynchronously)).Task.WaitAsync(Patience);

        await fixture.Client.CancelAsync(run.RunId, "stop it");
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Cancelled, done.Status);
        Assert.True(HangTool.SawCancel.GetValueOrDefault(run.RunId));
        Assert.Equal(["book", "undo-hang", "unbook"], EffectTool.CallsOf(run.RunId).Select(c => c.Action));
        var hang = (await fixture.Client.GetJournalAsync(run.RunId)).Single(r => r.Kind == "Tool" && r.Name == HangTool.Name);
        var error = JsonDocument.Parse(hang.PayloadJson!).RootElement;
        Assert.Equal("cancelled", error.GetProperty("class").GetString());
        Assert.True(error.GetProperty("outcomeUnknown").GetBoolean());
    }

    [Fact]
    public async Task ACancel_WhileAStepWaitsToRetryACallThatTimedOut_CompensatesThatStep()
    {
        var run = await fixture.Client.StartAsync("test.book-then-call", new BookThenCall("test_slow", "undo-slow", RetryDelayMinutes: 5));
        await WaitForAsync(run.RunId, "AttemptFailed");

        await fixture.Client.CancelAsync(run.RunId, "stop it");
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        // The timed-out attempt may have had its effect; the step has no outcome, as the cancel ended its wait.
        Assert.Equal(RunStatus.Cancelled, done.Status);
        Assert.Equal(["book", "undo-slow", "unbook"], EffectTool.CallsOf(run.RunId).Select(c => c.Action));
        Assert.DoesNotContain(await fixture.Client.GetJournalAsync(run.RunId), r => r.Kind == "Tool" && r.Name == "test_slow");
    }

    private async Task WaitForAsync(string runId, string kind)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!(await fixture.Client.GetJournalAsync(runId)).Any(r => r.Kind == kind))
        {
            Assert.True(DateTime.UtcNow < deadline, $"no {kind} row in run {runId}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task AModelCall_TimesOutByItsChatClientsTimeout_AndTheRetryAnswers()
    {
        var prompt = $"hang {Guid.NewGuid():N}";
        var run = await fixture.Client.StartAsync("agent", new AgentInput(prompt, ChatClient: HangingChatClient.Key));

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        var failed = Assert.Single(await fixture.Client.GetJournalAsync(run.RunId), r => r.Kind == "AttemptFailed");
        Assert.Contains($"Chat client '{HangingChatClient.Key}' did not answer within 00:00:00.3000000", failed.PayloadJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AStepsOwnTimeout_CancelsItsAction_AndFailsItAsATimeout()
    {
        var run = await fixture.Client.StartAsync("test.step-timeout", 200);

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Contains("Step 1 'wait' did not answer within 00:00:00.2000000", done.ResultJson, StringComparison.Ordinal);
    }
}
