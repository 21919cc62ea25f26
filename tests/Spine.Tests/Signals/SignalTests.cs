using System.Text.Json;
using Spine.Errors;
using Spine.Identity;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Signals;

/// <summary>Signals on a real silo with real PostgreSQL and reminders: journaled, delivered in order, durable across activations.</summary>
[Collection(ClusterCollection.Name)]
public sealed class SignalTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task SignalsSentBeforeTheWorkflowWaits_AreDeliveredWhenItDoes_OldestFirst()
    {
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("review", Count: 2, SleepFirstMilliseconds: 1500));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run to sleep");

        await fixture.Client.SignalAsync(run.RunId, "review", "first", actor: new SpineActor("alice", ["reviewer"]));
        await fixture.Client.SignalAsync(run.RunId, "other", "not for this wait");
        await fixture.Client.SignalAsync(run.RunId, "review", "second", actor: new SpineActor("bob"));
        var result = await fixture.Client.GetResultAsync<string[]>(run.RunId);

        Assert.Equal(["first", "second"], result);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        var received = journal.Where(r => r.Kind == "SignalReceived").ToList();
        Assert.Equal(["review", "other", "review"], received.Select(r => r.Name));
        Assert.Equal("alice", JsonDocument.Parse(received[0].PayloadJson!).RootElement.GetProperty("actor").GetProperty("id").GetString());
        Assert.Equal(2, journal.Count(r => r.Kind == "Signal"));
        Assert.DoesNotContain(journal, r => r.Kind == "SignalAwaited");
    }

    [Fact]
    public async Task AWaitingRun_ShowsAwaitingSignal_AndTheSignalWakesIt()
    {
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("go", TimeoutMilliseconds: 60_000));

        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait for its signal");
        // The snapshot shows the status as soon as the run decides it; the index, once its write commits.
        var listed = await Eventually.GetAsync(() => fixture.Client.ListAsync(new RunQuery { Status = RunStatus.AwaitingSignal, WorkflowType = "test.signals", Limit = 1000 }),
            runs => runs.Any(r => r.RunId == run.RunId), Patience, "the index to list the run as waiting");
        await fixture.Client.SignalAsync(run.RunId, "go", "now");
        var result = await fixture.Client.GetResultAsync<string[]>(run.RunId);

        Assert.Contains(listed, r => r.RunId == run.RunId);
        Assert.Equal(["now"], result);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "SignalAwaited", "SignalReceived", "Signal", "Step", "RunCompleted"], journal.Select(r => r.Kind));
    }

    [Fact]
    public async Task AWaitWithNoSignal_TimesOutAtItsDeadline_AndTheTimeoutIsJournaled()
    {
        var started = DateTimeOffset.UtcNow;
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("never", TimeoutMilliseconds: 800));

        var result = await fixture.Client.GetResultAsync<string[]>(run.RunId);

        Assert.Equal(["timeout"], result);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        var outcome = journal.Single(r => r.Kind == "Signal");
        Assert.Equal("error", outcome.Outcome);
        Assert.True(outcome.RecordedAt - started >= TimeSpan.FromMilliseconds(800), $"timed out after {outcome.RecordedAt - started}");
    }

    [Fact]
    public async Task ADeactivatedWaitingRun_KeepsItsDeadline_AndTheSweepBringsItBackToTimeItOut()
    {
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("never", TimeoutMilliseconds: 3000));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait for its signal");

        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var journal = await Eventually.GetAsync(() => fixture.Client.GetJournalAsync(run.RunId), j => j.Any(r => r.Kind == "RunCompleted"), Patience, "the sweep to bring the run back and end the wait");

        var awaited = journal.Single(r => r.Kind == "SignalAwaited");
        var deadline = JsonDocument.Parse(awaited.PayloadJson!).RootElement.GetProperty("deadline").GetDateTimeOffset();
        var outcome = journal.Single(r => r.Kind == "Signal");
        Assert.Equal("error", outcome.Outcome);
        Assert.True(outcome.RecordedAt >= deadline, $"timed out at {outcome.RecordedAt:O}, before its deadline {deadline:O}");
    }

    [Fact]
    public async Task ASignalToADeactivatedWaitingRun_BringsItBack_AndIsDeliveredOnce()
    {
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("resume"));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait for its signal");

        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        await fixture.Client.SignalAsync(run.RunId, "resume", "payload");
        var result = await fixture.Client.GetResultAsync<string[]>(run.RunId);

        Assert.Equal(["payload"], result);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Single(journal, r => r.Kind == "SignalAwaited");
        Assert.Single(journal, r => r.Kind == "Signal");
    }

    [Fact]
    public async Task ASignalSentTwiceWithOneId_IsJournaledOnce()
    {
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("pay", Count: 2, TimeoutMilliseconds: 1500));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait for its signal");

        await Task.WhenAll(
            fixture.Client.SignalAsync(run.RunId, "pay", "once", signalId: "invoice-17"),
            fixture.Client.SignalAsync(run.RunId, "pay", "once", signalId: "invoice-17"));
        await fixture.Client.SignalAsync(run.RunId, "pay", "once", signalId: "invoice-17");
        var result = await fixture.Client.GetResultAsync<string[]>(run.RunId);

        Assert.Equal(["once", "timeout"], result);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Single(journal, r => r.Kind == "SignalReceived");
    }

    [Fact]
    public async Task ACancel_EndsAWaitWithoutDeadline()
    {
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("forever"));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait for its signal");

        await fixture.Client.CancelAsync(run.RunId, "not needed");
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Cancelled, done.Status);
    }

    [Fact]
    public async Task BadSignals_AreRefusedWithTypedErrors_AndJournalNothing()
    {
        var finished = await fixture.Client.StartAsync("test.signals", new SignalInput("x", TimeoutMilliseconds: 0));
        await fixture.Client.WaitAsync(finished.RunId, Patience);
        var waiting = await fixture.Client.StartAsync("test.signals", new SignalInput("x"));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(waiting.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait for its signal");
        var before = await fixture.Client.GetJournalAsync(waiting.RunId);
        var finishedBefore = await fixture.Client.GetJournalAsync(finished.RunId);

        await Assert.ThrowsAsync<InvalidRunStateException>(() => fixture.Client.SignalAsync(finished.RunId, "x", "late"));
        await Assert.ThrowsAsync<RunNotFoundException>(() => fixture.Client.SignalAsync("r-" + Guid.NewGuid().ToString("N"), "x", "nobody"));
        await Assert.ThrowsAsync<InvalidPayloadException>(() => fixture.Client.SignalAsync(waiting.RunId, new SignalRequest("x", "{not json")));
        await Assert.ThrowsAsync<InvalidPayloadException>(() => fixture.Client.SignalAsync(waiting.RunId, new SignalRequest("spine.approval", "true")));
        await Assert.ThrowsAsync<InvalidIdentifierException>(() => fixture.Client.SignalAsync(waiting.RunId, new SignalRequest(" ", "true")));
        await Assert.ThrowsAsync<PayloadTooLargeException>(() => fixture.Client.SignalAsync(waiting.RunId, "x", new string('a', 2_000_000)));

        Assert.Equal(before.Count, (await fixture.Client.GetJournalAsync(waiting.RunId)).Count);
        Assert.Equal(finishedBefore.Count, (await fixture.Client.GetJournalAsync(finished.RunId)).Count);
        Assert.Equal(RunStatus.AwaitingSignal, (await fixture.Client.GetAsync(waiting.RunId)).Status);
        await fixture.Client.CancelAsync(waiting.RunId);
    }
}
