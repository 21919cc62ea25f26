using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Recovery;

[Collection(ClusterCollection.Name)]
public sealed class CompensationTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task TerminalFailure_CompensatesCompletedStepsInReverseOrder()
    {
        var run = await fixture.Client.StartAsync("test.saga", new SagaInput());

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal(["reserve", "charge", "ship", "refund", "release"], EffectTool.CallsOf(run.RunId).Select(c => c.Action));
        var calls = EffectTool.CallsOf(run.RunId);
        Assert.Equal($"{run.RunId}/2/compensate", calls.Single(c => c.Action == "refund").Key);
        Assert.Equal($"{run.RunId}/1/compensate", calls.Single(c => c.Action == "release").Key);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal([2, 1], journal.Where(r => r.Kind == "Compensated").Select(r => r.Step ?? 0));
        Assert.Contains(journal, r => r.Kind == "CompensationStarted");
        Assert.Equal("RunFailed", journal[^1].Kind);
    }

    [Fact]
    public async Task CompensationFailsOnce_RetriedWithSameIdempotencyKey()
    {
        var run = await fixture.Client.StartAsync("test.saga", new SagaInput(FailRelease: "transient-once"));

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        var releases = EffectTool.CallsOf(run.RunId).Where(c => c.Action == "release").ToList();
        Assert.Equal([1, 2], releases.Select(c => c.Attempt));
        Assert.Single(releases.Select(c => c.Key).Distinct());
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["ok", "error", "ok"], journal.Where(r => r.Kind == "Compensated").Select(r => r.Outcome));
    }

    [Fact]
    public async Task CompensationExhaustsRetries_RunIsDeadLetteredWithReason()
    {
        var run = await fixture.Client.StartAsync("test.saga", new SagaInput(FailRelease: "transient-always"));

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.DeadLettered, done.Status);
        Assert.Equal("compensation_failed", done.Error!.Kind);
        Assert.Contains("compensation of step 1", done.Error.Message, StringComparison.Ordinal);
        Assert.Contains(await fixture.Client.ListDeadLettersAsync(1000), r => r.RunId == run.RunId && r.Error!.Kind == "compensation_failed");
    }

    [Fact]
    public async Task Cancel_AfterEffects_CompensatesThenEndsCancelled()
    {
        var run = await fixture.Client.StartAsync("test.saga", new SagaInput(FailShip: null, SleepMilliseconds: 60_000));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the saga to sleep");

        await fixture.Client.CancelAsync(run.RunId, "customer cancelled");
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Cancelled, done.Status);
        Assert.Equal(["reserve", "charge", "refund", "release"], EffectTool.CallsOf(run.RunId).Select(c => c.Action));
        var kinds = (await fixture.Client.GetJournalAsync(run.RunId)).Select(r => r.Kind).ToList();
        Assert.True(kinds.IndexOf("CancelRequested") < kinds.IndexOf("CompensationStarted"));
        Assert.Equal("RunCancelled", kinds[^1]);
    }

    [Fact]
    public async Task Deactivated_DuringCompensationRetryWait_ResumesCompensationNotWorkflow()
    {
        var run = await fixture.Client.StartAsync("test.saga", new SagaInput(FailRelease: "transient-once"));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Compensating, Patience, "compensation to start");

        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        var actions = EffectTool.CallsOf(run.RunId).Select(c => c.Action).ToList();
        Assert.Single(actions, a => a == "reserve");
        Assert.Single(actions, a => a == "ship");
        Assert.Single(actions, a => a == "refund");
        Assert.Equal(2, actions.Count(a => a == "release"));
    }

    [Fact]
    public async Task StepTimedOut_RunFails_TheTimedOutStepIsCompensatedToo()
    {
        var run = await fixture.Client.StartAsync("test.timeout-saga", 0);
        var done = await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));

        // The slow call may have had its effect before its answer was given up on: it is undone, newest first.
        Assert.Equal(RunStatus.DeadLettered, done.Status);
        Assert.Equal(["book", "undo-slow", "unbook"], EffectTool.CallsOf(run.RunId).Select(c => c.Action));
        var compensation = (await fixture.Client.GetJournalAsync(run.RunId)).Where(r => r.Kind == "CompensationRegistered").ToList();
        Assert.All(compensation, r => Assert.Contains("\"version\":\"1.0.0\"", r.PayloadJson, StringComparison.Ordinal));
    }
}
