using System.Text.Json;
using Spine.Errors;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Runs;

/// <summary>Context calls issued together (<c>Task.WhenAll</c>): issue-order step numbers, many waiters, one reminder.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ParallelStepTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task ParallelSteps_DeactivatedWhileInFlight_KeepIssueOrderNumbersAndRunEachEffectOnce()
    {
        var run = await fixture.Client.StartAsync("test.parallel", "steps");
        await Eventually.GetAsync(() => Task.FromResult(Effects.Of(run.RunId, "b")), n => n == 1, Patience, "step b");
        await Eventually.GetAsync(async () => (await fixture.Client.GetJournalAsync(run.RunId)).Count(r => r.Kind == "Step"), n => n == 1, Patience, "step b's row");

        // a and c are in flight: end the activation under them; the next one re-executes from the journal.
        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        await Eventually.GetAsync(() => Task.FromResult(Effects.Of(run.RunId, "a-stopped") + Effects.Of(run.RunId, "c-stopped")), n => n == 2, Patience, "the old activation to stop a and c");
        ParallelWorkflow.Gates.GetOrAdd(run.RunId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        await fixture.Client.GetAsync(run.RunId);
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("\"a1,b2,c3;4\"", done.ResultJson);
        var steps = (await fixture.Client.GetJournalAsync(run.RunId)).Where(r => r.Kind == "Step").ToDictionary(r => r.Name, r => r.Step);
        Assert.Equal(new Dictionary<string, int?> { ["a"] = 1, ["b"] = 2, ["c"] = 3, ["after"] = 4 }, steps);
        Assert.Equal(1, Effects.Of(run.RunId, "a"));
        Assert.Equal(1, Effects.Of(run.RunId, "b"));
        Assert.Equal(1, Effects.Of(run.RunId, "c"));
    }

    [Theory]
    [InlineData("chains", "\"a:1,4|b:2,3\"")]
    [InlineData("sleepy-chains", "\"a:0,4|b:2,3\"")]
    [InlineData("chains-a-first", "\"a:1,3|b:2,4\"")]
    public async Task ParallelBranchesOfTwoCalls_Reexecuted_NumberTheirCallsAsTheFirstExecutionDid(string mode, string expected)
    {
        var run = await fixture.Client.StartAsync("test.parallel", mode);
        await Eventually.GetAsync(async () => (await fixture.Client.GetJournalAsync(run.RunId)).Count(r => r.Kind is "Step" or "TimerFired"), n => n == 3, Patience, "b's calls and a's first");
        await Task.Delay(200);

        // a2 is in flight: end the activation under it; the next one re-executes both branches from the journal.
        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        await Eventually.GetAsync(() => Task.FromResult(Effects.Of(run.RunId, "a2-stopped")), n => n == 1, Patience, "the old activation to stop a2");
        ParallelWorkflow.Gates.GetOrAdd(run.RunId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        await fixture.Client.GetAsync(run.RunId);
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal(expected, done.ResultJson);
        Assert.Equal(1, Effects.Of(run.RunId, "b2"));
        Assert.Equal(1, Effects.Of(run.RunId, "a2"));
    }

    [Fact]
    public async Task ParallelSleeps_TheIndexWakesTheRunAtTheEarliest_NoReminderIsWritten_CancelWakesBoth()
    {
        var run = await fixture.Client.StartAsync("test.parallel", "sleeps");
        await Eventually.GetAsync(async () => (await fixture.Client.GetJournalAsync(run.RunId)).Count(r => r.Kind == "Timer"), n => n == 2, Patience, "both sleeps");
        await Task.Delay(500);
        var sleeping = await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run to sleep");

        // The index row that says the run sleeps says until when, for the recovery sweep: the end of the
        // twenty-second sleep, not of the ten-minute one. The run registered no reminder of its own.
        var timers = (await fixture.Client.GetJournalAsync(run.RunId)).Where(r => r.Kind == "Timer")
            .Select(r => JsonDocument.Parse(r.PayloadJson!).RootElement.GetProperty("wakeAt").GetDateTimeOffset()).Order().ToList();
        var wakeAt = await fixture.Postgres.ScalarAsync<DateTime>("SELECT wake_at FROM spine_runs WHERE run_id = @id", ("id", run.RunId));
        Assert.Equal(timers[0].UtcDateTime, wakeAt, TimeSpan.FromMilliseconds(1));
        Assert.True(timers[1] - timers[0] > TimeSpan.FromMinutes(5), $"the sleeps end at {timers[0]:O} and {timers[1]:O}");
        Assert.Equal(0L, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM orleansremindertable WHERE grainid LIKE @g", ("g", $"%{run.RunId}")));

        // A cancel wakes both sleeps at once, not one of them.
        await fixture.Client.CancelAsync(run.RunId, "enough");
        var done = await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(10));

        Assert.Equal(RunStatus.Cancelled, done.Status);
    }

    [Fact]
    public async Task ParallelEscalations_BothWait_EachDecidedByStep()
    {
        var run = await fixture.Client.StartAsync("test.parallel", "escalations");
        var waiting = await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Escalations.Count == 2, Patience, "both escalations");

        Assert.Equal(RunStatus.AwaitingOperator, waiting.Status);
        Assert.Equal([1, 2], waiting.Escalations.Select(e => e.Step));
        await Assert.ThrowsAsync<InvalidRunStateException>(() => fixture.Client.ResolveEscalationAsync(run.RunId, new OperatorDecision(OperatorAction.Skip, "1")));

        var half = await fixture.Client.ResolveEscalationAsync(run.RunId, new OperatorDecision(OperatorAction.Skip, "10", Step: 1));
        Assert.Equal(2, Assert.Single(half.Escalations).Step);
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingOperator, Patience, "the run to wait for the second decision");
        await fixture.Client.ResolveEscalationAsync(run.RunId, new OperatorDecision(OperatorAction.Skip, "20", Step: 2));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("\"30\"", done.ResultJson);
        Assert.Equal(2, (await fixture.Client.GetJournalAsync(run.RunId)).Count(r => r.Kind == "OperatorDecided"));
    }
}
