using System.Text.Json;
using Npgsql;
using Spine.Approvals;
using Spine.Errors;
using Spine.Identity;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Approvals;

/// <summary>Approval gates under races: deadlines against decisions, escalations being written, slow commits, cancels, replays.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ApprovalRaceTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private static readonly SpineActor Alice = new("alice", ["approver"]);
    private static readonly SpineActor Carol = new("carol", ["manager"]);

    // The escalation row is being appended (slowed here by a trigger, as a slow commit is): an approver of the first
    // role, whose deadline passed, must be refused although the escalation is not journaled yet.
    [Fact]
    public async Task ADecisionOfTheFirstRole_WhileTheEscalationIsBeingJournaled_IsRefused()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(900_00, TimeoutSeconds: 2, EscalateToRole: "manager", EscalateTimeoutSeconds: 60));
        await WaitingAsync(run.RunId);
        var deadline = await DeadlineAsync(run.RunId);
        var trigger = await SlowAsync("spine_journal", "INSERT", $"NEW.run_id = '{run.RunId}' AND NEW.kind = 14", 3);
        Exception? firstRole;
        try
        {
            await Task.Delay(Until(deadline) + TimeSpan.FromMilliseconds(1000));
            firstRole = await Record.ExceptionAsync(() => fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", "late", Actor: Alice)));
        }
        finally
        {
            await DropAsync(trigger, "spine_journal");
        }

        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        if (firstRole is null)
        {
            // Accepted: it must at least have come before the escalation, and the run must not go on under it.
            Assert.True(journal.ToList().FindIndex(r => r.Kind == "SignalReceived") < journal.ToList().FindIndex(r => r.Kind == "ApprovalEscalated"),
                "the first role's decision was accepted and journaled after the approval escalated to 'manager': " + string.Join(", ", journal.Select(r => r.Kind)));
        }

        Assert.IsType<ApprovalForbiddenException>(firstRole);
        await fixture.Client.CancelAsync(run.RunId);
    }

    // The final deadline (reject) passed; the status write that follows the timer is slow. A decision a second after
    // the deadline must be refused, not journaled to win over the deadline.
    [Fact]
    public async Task ADecisionAfterTheFinalDeadline_IsRefused_EvenIfTheRunHasNotActedOnItYet()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(7_00, TimeoutSeconds: 2));
        await WaitingAsync(run.RunId);
        var deadline = await DeadlineAsync(run.RunId);
        var trigger = await SlowAsync("spine_runs", "UPDATE", $"NEW.run_id = '{run.RunId}' AND OLD.status = 12 AND NEW.status = 1", 3);
        Exception? late;
        try
        {
            await Task.Delay(Until(deadline) + TimeSpan.FromMilliseconds(1000));
            late = await Record.ExceptionAsync(() => fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", "late", Actor: Alice)));
        }
        finally
        {
            await DropAsync(trigger, "spine_runs");
        }

        var output = await fixture.Client.GetResultAsync<PayoutOutput>(run.RunId);
        Assert.True(output.Decision.TimedOut, $"decided by {output.Decision.Actor?.Id} at {output.Decision.DecidedAt:O}, after the deadline {deadline:O} that rejects");
        Assert.False(output.Paid);
        Assert.IsType<ApprovalNotPendingException>(late);
    }

    // A decision activates a deactivated run. The re-execution's status write (Running -> AwaitingApproval) may land
    // after the decision's commit (Running): the index must not be left showing AwaitingApproval (where the recovery
    // sweep does not look) while the approved payout step executes.
    [Fact]
    public async Task ARunDecidedWhileDeactivated_DoesNotShowAsAwaitingApprovalWhileItExecutes()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(3_00));
        await WaitingAsync(run.RunId);
        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var slowSignal = await SlowAsync("spine_journal", "INSERT", $"NEW.run_id = '{run.RunId}' AND NEW.kind = 25", 2);
        var slowPayout = await SlowAsync("spine_demo_ledger", "INSERT", $"NEW.run_id = '{run.RunId}'", 6);
        short during;
        try
        {
            await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: Alice));
            await Eventually.GetAsync(() => fixture.Client.GetJournalAsync(run.RunId), j => j.Any(r => r.Kind == "Approval"), Patience, "the approval outcome");
            await Task.Delay(1000);
            during = await fixture.Postgres.ScalarAsync<short>("SELECT status FROM spine_runs WHERE run_id = @id", ("id", run.RunId));
        }
        finally
        {
            await DropAsync(slowSignal, "spine_journal");
            await DropAsync(slowPayout, "spine_demo_ledger");
        }

        Assert.True((await fixture.Client.GetResultAsync<PayoutOutput>(run.RunId)).Paid);
        Assert.Equal((short)RunStatus.Running, during);
    }

    // A cancelled run lists no pending approval, live as after a reactivation, and a decision is refused as not pending.
    [Fact]
    public async Task ACancelledRun_ShowsNoPendingApproval()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(2_00));
        await WaitingAsync(run.RunId);

        await fixture.Client.CancelAsync(run.RunId, "changed my mind");
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);
        var decision = await Record.ExceptionAsync(() => fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: Alice)));

        Assert.Equal(RunStatus.Cancelled, done.Status);
        Assert.Empty(done.Approvals);
        Assert.IsType<ApprovalNotPendingException>(decision);
        Assert.DoesNotContain("deadline", decision.Message, StringComparison.Ordinal);
    }

    // A replay never reuses its source's approval: with another input it would pay out an amount nobody approved.
    [Fact]
    public async Task AReplayWithAnotherProposedAction_DoesNotReuseTheApproval()
    {
        var source = await fixture.Client.StartAsync("payout", new PayoutInput(1_00));
        await WaitingAsync(source.RunId);
        await fixture.Client.DecideApprovalAsync(source.RunId, new ApprovalVerdict(true, "approver", "one euro is fine", Actor: Alice));
        Assert.True((await fixture.Client.GetResultAsync<PayoutOutput>(source.RunId)).Paid);

        var replay = await fixture.Client.ReplayAsync(new ReplayRequest(source.RunId, FromStep: 2, InputJson: JsonSerializer.Serialize(new PayoutInput(1_000_000_00), new JsonSerializerOptions(JsonSerializerDefaults.Web))));
        var info = await Eventually.GetAsync(() => fixture.Client.GetAsync(replay.RunId), i => i.Status is RunStatus.AwaitingApproval || i.Status.IsTerminal(), Patience, "the replay to wait or end");

        Assert.Equal(RunStatus.AwaitingApproval, info.Status);
        await fixture.Client.CancelAsync(replay.RunId);
    }

    // A grain timer cannot be due later than about 49.7 days (2^32 - 2 ms); a longer approval (or sleep) must still
    // wait quietly, not spin writing its status.
    [Fact]
    public async Task AnApprovalWithA60DayTimeout_WaitsQuietly()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(4_00, TimeoutSeconds: 60 * 24 * 3600));
        DateTime first, second;
        RunInfo info;
        try
        {
            await Task.Delay(3000);
            first = await fixture.Postgres.ScalarAsync<DateTime>("SELECT updated_at FROM spine_runs WHERE run_id = @id", ("id", run.RunId));
            await Task.Delay(2000);
            second = await fixture.Postgres.ScalarAsync<DateTime>("SELECT updated_at FROM spine_runs WHERE run_id = @id", ("id", run.RunId));
            info = await fixture.Client.GetAsync(run.RunId);
        }
        catch
        {
            await fixture.Client.CancelAsync(run.RunId);
            throw;
        }

        if (info.Status != RunStatus.AwaitingApproval || first != second)
        {
            // Do not leave a spinning run behind for the other tests.
            await fixture.Client.CancelAsync(run.RunId);
        }

        Assert.Equal(RunStatus.AwaitingApproval, info.Status);
        Assert.Equal(first, second);
        await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: Alice));
        Assert.True((await fixture.Client.GetResultAsync<PayoutOutput>(run.RunId)).Paid);
    }


    // A run's own code (its workflow, a tool, whatever a model made them do) calls the decision on its own approval.
    [Fact]
    public async Task ARunsOwnCode_CannotDecideItsApproval()
    {
        var run = await fixture.Client.StartAsync("test.self-approval", 0);

        var result = await fixture.Client.GetResultAsync<string>(run.RunId);

        Assert.StartsWith("forbidden:", result, StringComparison.Ordinal);
        Assert.Contains("never from a run", result, StringComparison.Ordinal);
        Assert.DoesNotContain(await fixture.Client.GetJournalAsync(run.RunId), r => r.Kind == "SignalReceived");
    }

    private Task<RunInfo> WaitingAsync(string runId) =>
        Eventually.GetAsync(() => fixture.Client.GetAsync(runId), i => i.Status == RunStatus.AwaitingApproval, Patience, "the run to wait for its approval");

    private async Task<DateTimeOffset> DeadlineAsync(string runId)
    {
        var journal = await fixture.Client.GetJournalAsync(runId);
        return JsonDocument.Parse(journal.Single(r => r.Kind == "ApprovalRequested").PayloadJson!).RootElement.GetProperty("deadline").GetDateTimeOffset();
    }

    private static TimeSpan Until(DateTimeOffset at) => at - DateTimeOffset.UtcNow is { } left && left > TimeSpan.Zero ? left : TimeSpan.Zero;

    /// <summary>A trigger that makes matching writes on <paramref name="table"/> take <paramref name="seconds"/> longer.</summary>
    private async Task<string> SlowAsync(string table, string operation, string when, int seconds)
    {
        var name = "test_slow_" + Guid.NewGuid().ToString("N")[..8];
        await ExecuteAsync($"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$;
            CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}();
            """);
        return name;
    }

    private Task DropAsync(string trigger, string table) => ExecuteAsync($"DROP TRIGGER {trigger} ON {table}; DROP FUNCTION {trigger}();");

    private async Task ExecuteAsync(string sql)
    {
        await using var data = NpgsqlDataSource.Create(fixture.Postgres.OwnerConnectionString);
        await using var command = data.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }
}
