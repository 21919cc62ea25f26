using Spine.Errors;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Runs;

[Collection(ClusterCollection.Name)]
public sealed class WorkflowRunTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task StartAsync_StepsWorkflow_CompletesWithResultAndJournal()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(4));

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("10", done.ResultJson);
        Assert.Equal(4, done.StepsRecorded);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "Step", "Step", "Step", "Step", "RunCompleted"], journal.Select(r => r.Kind));
        Assert.Equal(Enumerable.Range(0, 6), journal.Select(r => r.Seq));
        Assert.True((await fixture.Client.VerifyJournalAsync(run.RunId)).Intact);
    }

    [Fact]
    public async Task StartAsync_SameIdempotencyKeyTwice_ReturnsSameRunAndRunsOnce()
    {
        var key = Guid.NewGuid().ToString();

        var first = await fixture.Client.StartAsync("test.steps", new StepsInput(2), idempotencyKey: key, accountId: "acme");
        var second = await fixture.Client.StartAsync("test.steps", new StepsInput(2), idempotencyKey: key, accountId: "acme");
        await fixture.Client.WaitAsync(first.RunId, Patience);
        var third = await fixture.Client.StartAsync("test.steps", new StepsInput(2), idempotencyKey: key, accountId: "acme");

        Assert.Equal(first.RunId, second.RunId);
        Assert.Equal(first.RunId, third.RunId);
        Assert.Equal(RunStatus.Completed, third.Status);
        Assert.Equal(1, Effects.Of(first.RunId, "step-1"));
        Assert.Equal(1, (await fixture.Client.ListAsync(new RunQuery { AccountId = "acme", Limit = 1000 })).Count(r => r.RunId == first.RunId));
    }

    [Fact]
    public async Task Reactivation_MidRun_ReplaysRecordedStepsWithoutRerunningThem()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(4, SleepMilliseconds: 1500));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run to sleep");

        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("10", done.ResultJson);
        foreach (var step in new[] { "step-1", "step-2", "step-3", "step-4" })
        {
            Assert.Equal(1, Effects.Of(run.RunId, step));
        }

        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "Step", "Step", "Timer", "TimerFired", "Step", "Step", "RunCompleted"], journal.Select(r => r.Kind));
    }

    [Fact]
    public async Task Reactivation_RecordedTimeAndRandom_SameValuesAfterReplay()
    {
        var run = await fixture.Client.StartAsync("test.values", 1500);
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run to sleep");

        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var values = await fixture.Client.GetResultAsync<RecordedValues>(run.RunId);

        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal($"\"{values.Random}\"", journal.Single(r => r.Name == "random").PayloadJson);
        Assert.Equal($"\"{values.Guid:D}\"", journal.Single(r => r.Name == "guid").PayloadJson);
        Assert.Equal(values.Now, DateTimeOffset.Parse(System.Text.Json.JsonSerializer.Deserialize<string>(journal.Single(r => r.Name == "now").PayloadJson!)!, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Reactivation_WorkflowCodeChangedStep_FailsWithNonDeterminism()
    {
        var run = await fixture.Client.StartAsync("test.flip", 1500);
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run to sleep");

        FlipWorkflow.FirstStepName[run.RunId] = "send-email";
        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("non_determinism", done.Error!.Kind);
        Assert.Equal(1, done.Error.Step);
        Assert.Contains("Step 'charge-card'", done.Error.Message, StringComparison.Ordinal);
        Assert.Contains("Step 'send-email'", done.Error.Message, StringComparison.Ordinal);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.DoesNotContain(journal, r => r.Name == "after");
    }

    [Fact]
    public async Task Reactivation_ToolCallsReordered_FailsWithNonDeterminismNamingBothCalls()
    {
        var run = await fixture.Client.StartAsync("test.reorder", 1500);
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run to sleep");

        // Same tool, same step numbers, the arguments swapped: the journal answered with the other call's output before.
        ReorderWorkflow.Swapped[run.RunId] = true;
        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("non_determinism", done.Error!.Kind);
        Assert.Equal(1, done.Error.Step);
        Assert.Contains("""{"action":"charge"}""", done.Error.Message, StringComparison.Ordinal);
        Assert.Contains("""{"action":"refund"}""", done.Error.Message, StringComparison.Ordinal);
        Assert.Equal(2, EffectTool.CallsOf(run.RunId).Count);
    }

    [Fact]
    public async Task SleepAsync_Sleeping_StatusSleepingThenCompletesAfterWakeTime()
    {
        var started = DateTimeOffset.UtcNow;
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(2, SleepMilliseconds: 1200));

        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run to sleep");
        var listed = await fixture.Client.ListAsync(new RunQuery { Status = RunStatus.Sleeping, WorkflowType = "test.steps", Limit = 1000 });
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Contains(listed, r => r.RunId == run.RunId);
        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.True(done.UpdatedAt - started >= TimeSpan.FromMilliseconds(1200), $"completed after {done.UpdatedAt - started}");
    }

    [Fact]
    public async Task CancelAsync_SleepingRun_StopsAtNextBoundaryAndJournalsIt()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(4, SleepMilliseconds: 60_000));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run to sleep");

        await fixture.Client.CancelAsync(run.RunId, "operator changed their mind");
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Cancelled, done.Status);
        Assert.Equal("cancelled", done.Error!.Kind);
        Assert.Contains("operator changed their mind", done.Error.Message, StringComparison.Ordinal);
        Assert.Equal(0, Effects.Of(run.RunId, "step-3"));
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "Step", "Step", "Timer", "CancelRequested", "RunCancelled"], journal.Select(r => r.Kind));
        var failed = await Assert.ThrowsAsync<RunFailedException>(() => fixture.Client.GetResultAsync<int>(run.RunId));
        Assert.Equal(RunStatus.Cancelled, failed.Status);
    }

    [Fact]
    public async Task ListAsync_ByStatusTypeAndAccount_ReturnsMatchingRunsNewestFirst()
    {
        var account = "acct-" + Guid.NewGuid().ToString("N");
        var a = await fixture.Client.StartAsync("test.steps", new StepsInput(1), accountId: account);
        await fixture.Client.WaitAsync(a.RunId, Patience);
        var b = await fixture.Client.StartAsync("test.steps", new StepsInput(1), accountId: account);
        await fixture.Client.WaitAsync(b.RunId, Patience);
        var c = await fixture.Client.StartAsync("test.steps", new StepsInput(2, SleepMilliseconds: 60_000), accountId: account);
        await Eventually.GetAsync(() => fixture.Client.GetAsync(c.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run to sleep");

        var completed = await fixture.Client.ListAsync(new RunQuery { AccountId = account, Status = RunStatus.Completed });
        var all = await fixture.Client.ListAsync(new RunQuery { AccountId = account, WorkflowType = "test.steps" });
        var otherType = await fixture.Client.ListAsync(new RunQuery { AccountId = account, WorkflowType = "agent" });
        await fixture.Client.CancelAsync(c.RunId);

        Assert.Equal([b.RunId, a.RunId], completed.Select(r => r.RunId));
        Assert.Equal([c.RunId, b.RunId, a.RunId], all.Select(r => r.RunId));
        Assert.Empty(otherType);
    }
}
