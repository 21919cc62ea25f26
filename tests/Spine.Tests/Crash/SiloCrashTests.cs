using Spine.Agents;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Crash;

/// <summary>A real silo process killed with SIGKILL mid-work; a new process takes over from PostgreSQL alone.</summary>
[Collection(SiloProcessCollection.Name)]
public sealed class SiloCrashTests(SiloProcessFixture fixture)
{
    private const int Runs = 60;
    private const int Steps = 5;

    [Fact]
    public async Task SiloKilled_WhileRunsAreMidStep_EveryRunCompletesAndEachEffectAppliesOnce()
    {
        var batch = Guid.NewGuid().ToString("N");
        // Started together: one at a time, on a loaded machine, the first runs could finish before the last began.
        var runIds = (await Task.WhenAll(Enumerable.Range(0, Runs).Select(i =>
            fixture.Client.StartAsync("ledger", new LedgerInput(Steps, StepMilliseconds: 300), idempotencyKey: $"{batch}-{i}")))).Select(r => r.RunId).ToList();

        var ids = runIds.ToArray();
        var appliedBeforeKill = await Eventually.GetAsync(
            () => fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)),
            n => n >= Runs, TimeSpan.FromSeconds(60), "the first steps to apply");
        await fixture.KillSiloAsync();
        var unfinishedAtKill = await fixture.Postgres.ScalarAsync<long>(
            "SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status NOT IN (3, 4, 5)", ("ids", ids));

        await fixture.StartSiloAsync();
        var finished = new List<RunInfo>();
        foreach (var id in runIds)
        {
            finished.Add(await Eventually.GetAsync(() => fixture.Client.WaitAsync(id, TimeSpan.FromSeconds(10)), i => i.Status.IsTerminal(), TimeSpan.FromSeconds(120), $"run {id} to finish"));
        }

        Assert.True(appliedBeforeKill < Runs * Steps, $"the kill came after all effects ({appliedBeforeKill})");
        Assert.True(unfinishedAtKill > Runs / 2, $"only {unfinishedAtKill} runs were unfinished at the kill");
        Assert.All(finished, r => Assert.Equal(RunStatus.Completed, r.Status));
        Assert.Equal((long)Runs * Steps, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)));
        Assert.Equal((long)Runs * Steps, await fixture.Postgres.ScalarAsync<long>("SELECT count(DISTINCT (run_id, step)) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)));
        Assert.Equal(Runs * Steps, finished.Sum(r => r.StepsRecorded));
        foreach (var id in runIds.Take(5))
        {
            Assert.True((await fixture.Client.VerifyJournalAsync(id)).Intact);
        }
    }

    [Fact]
    public async Task SiloKilled_WhileRunSleeps_RunWakesOnNewSiloAfterItsWakeTime()
    {
        var run = await fixture.Client.StartAsync("ledger", new LedgerInput(Steps: 2, StepMilliseconds: 0, PauseSeconds: 4));
        var sleeping = await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, TimeSpan.FromSeconds(30), "the run to sleep");

        await fixture.KillSiloAsync();
        await fixture.StartSiloAsync();
        var done = await Eventually.GetAsync(() => fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(10)), i => i.Status.IsTerminal(), TimeSpan.FromSeconds(60), "the run to finish");

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.True(done.UpdatedAt - sleeping.UpdatedAt >= TimeSpan.FromSeconds(3.5), $"woke after {done.UpdatedAt - sleeping.UpdatedAt}");
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "Step", "Timer", "TimerFired", "Step", "RunCompleted"], journal.Select(r => r.Kind));
        Assert.Equal(2L, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = @id", ("id", run.RunId)));
    }

    [Fact]
    public async Task SiloKilled_WhileARunWaitsForApproval_TheDeadlineStillEscalatesOnTime_AndTheEscalationsApproverDecides()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(250_00, TimeoutSeconds: 5, EscalateToRole: "manager", EscalateTimeoutSeconds: 600));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingApproval, TimeSpan.FromSeconds(30), "the run to wait for its approval");

        await fixture.KillSiloAsync();
        await fixture.StartSiloAsync();
        var escalated = await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Approvals is [{ Escalated: true }], TimeSpan.FromSeconds(90), "the approval to escalate");
        await fixture.Client.DecideApprovalAsync(run.RunId, new Spine.Approvals.ApprovalVerdict(true, "manager", "approved after the restart", Actor: new Spine.Identity.SpineActor("carol", ["manager"])));
        var output = await fixture.Client.GetResultAsync<PayoutOutput>(run.RunId);

        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        var deadline = System.Text.Json.JsonDocument.Parse(journal.Single(r => r.Kind == "ApprovalRequested").PayloadJson!).RootElement.GetProperty("deadline").GetDateTimeOffset();
        var escalatedAt = journal.Single(r => r.Kind == "ApprovalEscalated").RecordedAt;
        Assert.True(escalatedAt >= deadline, $"escalated at {escalatedAt:O}, before its deadline {deadline:O}");
        Assert.True(escalatedAt - deadline < TimeSpan.FromSeconds(60), $"escalated {escalatedAt - deadline} after its deadline");
        Assert.Equal(["manager"], escalated.Approvals[0].ApproverRoles);
        Assert.True(output.Paid);
        Assert.Equal("carol", output.Decision.Actor!.Id);
        Assert.Equal(1L, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = @id", ("id", run.RunId)));
    }

    [Fact]
    public async Task SiloKilled_WhileRetryIsScheduled_RetryHappensOnNewSiloNotBeforeItsDueTime()
    {
        var run = await fixture.Client.StartAsync("chaos", new ChaosInput(Steps: 1, FailureRate: 0, FailFirst: 1, RetryDelayMilliseconds: 4000));
        var ids = new[] { run.RunId };
        await Eventually.GetAsync(
            () => fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_journal WHERE run_id = @id AND kind = 7", ("id", run.RunId)),
            n => n == 1, TimeSpan.FromSeconds(30), "the first attempt to fail");

        await fixture.KillSiloAsync();
        await fixture.StartSiloAsync();
        var done = await Eventually.GetAsync(() => fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(10)), i => i.Status.IsTerminal(), TimeSpan.FromSeconds(60), "the run to finish");

        Assert.Equal(RunStatus.Completed, done.Status);
        var step = (await fixture.Client.GetJournalAsync(run.RunId)).Where(r => r.Step == 1).ToList();
        Assert.Equal(["AttemptFailed", "Tool"], step.Select(r => r.Kind));
        Assert.Equal([1, 2], step.Select(r => r.Attempt ?? 0));
        var waited = step[1].RecordedAt - step[0].RecordedAt;
        Assert.True(waited >= TimeSpan.FromSeconds(3.9), $"the retry ran {waited} after the failure, before its due time");
        Assert.True(waited < TimeSpan.FromSeconds(40), $"the retry ran {waited} after the failure");
        Assert.Equal(1L, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)));
    }

    [Fact]
    public async Task SiloKilled_MidAgentTurnWithThreeParallelToolCalls_RunCompletesWithEachEffectOnceAndTheSameStepNumbers()
    {
        var run = await fixture.Client.StartAsync("agent", new AgentInput("ledger: 0,4000,4000", Tools: ["ledger_apply"]));
        await Eventually.GetAsync(
            () => fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = @id", ("id", run.RunId)),
            n => n == 1, TimeSpan.FromSeconds(30), "the quick call to apply");

        // The two slow calls are in flight, issued together with the quick one.
        await fixture.KillSiloAsync();
        await fixture.StartSiloAsync();
        var done = await Eventually.GetAsync(() => fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(10)), i => i.Status.IsTerminal(), TimeSpan.FromSeconds(90), "the run to finish");

        Assert.Equal(RunStatus.Completed, done.Status);
        var tools = (await fixture.Client.GetJournalAsync(run.RunId)).Where(r => r.Kind == "Tool").ToList();
        Assert.Equal([2, 3, 4], tools.Select(r => r.Step!.Value).Order());
        foreach (var row in tools)
        {
            // Step n carries the model's call n - 1: the numbering of the re-execution matched the first one.
            using var payload = System.Text.Json.JsonDocument.Parse(row.PayloadJson!);
            Assert.Equal(row.Step - 1, payload.RootElement.GetProperty("input").GetProperty("step").GetInt32());
        }

        // The two slow calls ran side by side (one after the other they would finish 4 s apart).
        var slow = tools.Where(r => r.Step >= 3).Select(r => r.RecordedAt).ToList();
        Assert.True((slow.Max() - slow.Min()) < TimeSpan.FromSeconds(2), $"the slow calls finished {slow.Max() - slow.Min()} apart");
        Assert.Equal(3L, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = @id", ("id", run.RunId)));
        Assert.Equal(3L, await fixture.Postgres.ScalarAsync<long>("SELECT count(DISTINCT step) FROM spine_demo_ledger WHERE run_id = @id", ("id", run.RunId)));

        // Two model turns (the calls, then the answer): the turn recorded before the kill was not asked again.
        Assert.Equal(2L, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_journal WHERE run_id = @id AND kind = 3", ("id", run.RunId)));
    }
}
