using System.Text.Json;
using Spine.Approvals;
using Spine.Errors;
using Spine.Identity;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Approvals;

/// <summary>Approval gates on a real silo with real PostgreSQL and reminders: who may decide, once, and what deadlines do.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ApprovalTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private static readonly SpineActor Alice = new("alice", ["approver"]);

    [Fact]
    public async Task AnApprover_ApprovesAWaitingRun_AndTheDecisionItsActorAndCommentAreJournaled()
    {
        var account = "acct-" + Guid.NewGuid().ToString("N");
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(42_00), accountId: account);
        var waiting = await WaitingAsync(run.RunId);
        // The snapshot shows the status as soon as the run decides it; the index (which the listing reads), once its write commits.
        var listed = await Eventually.GetAsync(() => fixture.Client.ListApprovalsAsync(new ApprovalQuery { AccountId = account, Role = "approver" }),
            l => l.Count > 0, Patience, "the index to list the run as waiting");
        var otherRole = await fixture.Client.ListApprovalsAsync(new ApprovalQuery { AccountId = account, Role = "auditor" });

        await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", "within limits", Actor: Alice));
        var output = await fixture.Client.GetResultAsync<PayoutOutput>(run.RunId);

        var pending = Assert.Single(waiting.Approvals);
        Assert.Equal("Pay out 42.00?", pending.Question);
        Assert.Equal(["approver"], pending.ApproverRoles);
        Assert.Contains("\"amount\":4200", pending.ProposedActionJson, StringComparison.Ordinal);
        Assert.Equal(run.RunId, Assert.Single(listed).RunId);
        Assert.Empty(otherRole);
        Assert.True(output.Paid);
        Assert.Equal("alice", output.Decision.Actor!.Id);
        Assert.Equal("approver", output.Decision.Role);
        Assert.Equal("within limits", output.Decision.Comment);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "ApprovalRequested", "SignalReceived", "Approval", "Step", "RunCompleted"], journal.Select(r => r.Kind));
        var decision = JsonDocument.Parse(journal.Single(r => r.Kind == "SignalReceived").PayloadJson!).RootElement;
        Assert.Equal("alice", decision.GetProperty("actor").GetProperty("id").GetString());
        Assert.Equal("within limits", decision.GetProperty("payload").GetProperty("comment").GetString());
    }

    [Fact]
    public async Task ADecisionWithoutTheRole_IsForbidden_AndChangesNothing()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(10_00));
        await WaitingAsync(run.RunId);
        var before = (await fixture.Client.GetJournalAsync(run.RunId)).Count;

        var notHeld = await Assert.ThrowsAsync<ApprovalForbiddenException>(() =>
            fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: new SpineActor("mallory", ["viewer"]))));
        var notAccepted = await Assert.ThrowsAsync<ApprovalForbiddenException>(() =>
            fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "viewer", Actor: new SpineActor("mallory", ["viewer"]))));
        var anonymous = await Assert.ThrowsAsync<ApprovalForbiddenException>(() =>
            fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver")));
        var spinesOwn = await Assert.ThrowsAsync<ApprovalForbiddenException>(() =>
            fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: new SpineActor("spine:timeout", ["approver"]))));
        var asSignal = await Assert.ThrowsAsync<InvalidPayloadException>(() =>
            fixture.Client.SignalAsync(run.RunId, new SignalRequest("spine.approval.1", """{"approve":true,"role":"approver"}""")));

        Assert.Equal("approval_forbidden", notHeld.Kind);
        Assert.Contains("does not hold", notHeld.Message, StringComparison.Ordinal);
        Assert.Contains("accepts 'approver'", notAccepted.Message, StringComparison.Ordinal);
        Assert.Null(anonymous.Actor);
        Assert.Equal("spine:timeout", spinesOwn.Actor);
        Assert.Contains("Spine's own", asSignal.Message, StringComparison.Ordinal);
        Assert.Equal(before, (await fixture.Client.GetJournalAsync(run.RunId)).Count);
        Assert.Equal(RunStatus.AwaitingApproval, (await fixture.Client.GetAsync(run.RunId)).Status);
        await fixture.Client.CancelAsync(run.RunId);
    }

    [Fact]
    public async Task TwoDecisionsAtOnce_OneWins_AndALaterOneIsRefused()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(5_00));
        await WaitingAsync(run.RunId);

        var decisions = await Task.WhenAll(
            Record.ExceptionAsync(() => fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: Alice))),
            Record.ExceptionAsync(() => fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(false, "approver", Actor: new SpineActor("bob", ["approver"])))));
        await fixture.Client.WaitAsync(run.RunId, Patience);
        var late = await Assert.ThrowsAsync<ApprovalNotPendingException>(() =>
            fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(false, "approver", Actor: Alice)));

        Assert.Single(decisions, e => e is null);
        Assert.Single(decisions, e => e is ApprovalNotPendingException);
        Assert.Equal("approval_not_pending", late.Kind);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Single(journal, r => r.Kind == "SignalReceived");
        Assert.Single(journal, r => r.Kind == "Approval");
    }

    [Fact]
    public async Task ADecisionForARunThatDoesNotWait_IsRefused()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(1));
        await fixture.Client.WaitAsync(run.RunId, Patience);

        var error = await Assert.ThrowsAsync<ApprovalNotPendingException>(() =>
            fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: Alice)));

        Assert.Equal(RunStatus.Completed, error.Status);
        Assert.Contains("waits for no approval", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnUndecidedApproval_IsRejectedAtItsDeadline_AndLateDecisionsAreRefused()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(1_00, TimeoutSeconds: 1));

        var output = await fixture.Client.GetResultAsync<PayoutOutput>(run.RunId);
        var late = await Assert.ThrowsAsync<ApprovalNotPendingException>(() =>
            fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: Alice)));

        Assert.False(output.Paid);
        Assert.True(output.Decision.TimedOut);
        Assert.Null(output.Decision.Actor);
        Assert.NotNull(late);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        var requested = JsonDocument.Parse(journal.Single(r => r.Kind == "ApprovalRequested").PayloadJson!).RootElement.GetProperty("deadline").GetDateTimeOffset();
        Assert.True(journal.Single(r => r.Kind == "Approval").RecordedAt >= requested, "the approval ended before its deadline");
    }

    [Fact]
    public async Task AnEscalatedApproval_GoesToTheSecondRole_AndTheFirstMayNoLongerDecide()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(900_00, TimeoutSeconds: 1, EscalateToRole: "manager", EscalateTimeoutSeconds: 60));

        var escalated = await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Approvals is [{ Escalated: true }] && i.Status == RunStatus.AwaitingApproval,
            Patience, "the approval to escalate and wait again");
        var firstRole = await Assert.ThrowsAsync<ApprovalForbiddenException>(() =>
            fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: Alice)));
        await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "manager", "ok", Actor: new SpineActor("carol", ["manager"])));
        var output = await fixture.Client.GetResultAsync<PayoutOutput>(run.RunId);

        Assert.Equal(["manager"], escalated.Approvals[0].ApproverRoles);
        Assert.Equal(RunStatus.AwaitingApproval, escalated.Status);
        Assert.Contains("accepts 'manager'", firstRole.Message, StringComparison.Ordinal);
        Assert.True(output.Paid);
        Assert.Equal("carol", output.Decision.Actor!.Id);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "ApprovalRequested", "ApprovalEscalated", "SignalReceived", "Approval", "Step", "RunCompleted"], journal.Select(r => r.Kind));
    }

    [Fact]
    public async Task ADeactivatedWaitingRun_IsDecidedAndGoesOn()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(3_00));
        await WaitingAsync(run.RunId);

        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var waiting = await fixture.Client.GetAsync(run.RunId);
        await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: Alice));
        var output = await fixture.Client.GetResultAsync<PayoutOutput>(run.RunId);

        Assert.Single(waiting.Approvals);
        Assert.True(output.Paid);
        Assert.Single(await fixture.Client.GetJournalAsync(run.RunId), r => r.Kind == "ApprovalRequested");
    }

    [Fact]
    public async Task WaitingForAStatus_AnswersWhenTheRunShowsIt_WhenTheRunEnds_AndAtTheTimeout()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(5_00));

        var waiting = await fixture.Client.WaitForStatusAsync(run.RunId, RunStatus.AwaitingApproval, Patience);
        var notYet = await fixture.Client.WaitForStatusAsync(run.RunId, RunStatus.Sleeping, TimeSpan.FromMilliseconds(300));
        var untilTheEnd = fixture.Client.WaitForStatusAsync(run.RunId, RunStatus.Sleeping, Patience);
        await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "approver", Actor: Alice));
        var ended = await untilTheEnd;
        var unknown = await Assert.ThrowsAsync<RunNotFoundException>(() => fixture.Client.WaitForStatusAsync("no-such-run-" + Guid.NewGuid().ToString("N"), RunStatus.Completed, Patience));

        Assert.Equal(RunStatus.AwaitingApproval, waiting.Status);
        Assert.Single(waiting.Approvals);
        Assert.Equal(RunStatus.AwaitingApproval, notYet.Status);
        Assert.Equal(RunStatus.Completed, ended.Status);
        Assert.Contains("no-such-run-", unknown.Message, StringComparison.Ordinal);
    }

    private Task<RunInfo> WaitingAsync(string runId) =>
        Eventually.GetAsync(() => fixture.Client.GetAsync(runId), i => i.Status == RunStatus.AwaitingApproval, Patience, "the run to wait for its approval");
}
