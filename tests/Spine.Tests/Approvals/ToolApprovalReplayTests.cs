using System.Text.Json;
using Spine.Approvals;
using Spine.Identity;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Approvals;

/// <summary>Tool approvals read back from the journal: after a reactivation, and in a replay that forks a run.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ToolApprovalReplayTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private static readonly SpineActor Tess = new("tess", ["treasurer"]);

    [Fact]
    public async Task APendingApproval_IsAskedAgainAsJournaled_WhenTheCallCountsChangedBeforeTheRunReactivated()
    {
        var run = await fixture.Client.StartAsync("test.tool-approval-pair", "go");
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Approvals.Count == 2, Patience, "both calls to ask");

        // The second call is approved and uses the policy's one call; the first still waits.
        await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "treasurer", Step: 2, Actor: Tess));
        await Eventually.GetAsync(() => fixture.Client.GetJournalAsync(run.RunId), j => j.Any(r => r.Kind == "Tool"), Patience, "the second call's tool");
        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));

        // Re-executed, the first call's approval is the one it asked, still pending; not skipped for today's count.
        var waiting = await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingApproval || i.Status.IsTerminal(), Patience, "the run to wait again");
        Assert.Equal(RunStatus.AwaitingApproval, waiting.Status);
        Assert.Equal([1], waiting.Approvals.Select(a => a.Step));
        await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "treasurer", Step: 1, Actor: Tess));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        // Approved, it reaches the policy stage, which refuses the second call of the tool.
        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("""denied@4|{"moved":2}""", JsonSerializer.Deserialize<string>(done.ResultJson!));
        Assert.Empty(done.Approvals);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(2, journal.Count(r => r.Kind == "Approval"));
        Assert.Single(journal, r => r.Kind == "PolicyDenied");
        Assert.Equal(1, GuardedTool.Invocations.GetValueOrDefault(run.RunId));
    }

    [Fact]
    public async Task AnApprovalTheWorkflowNoLongerAsks_FailsTheRunAsNonDeterminism_WhileAParallelBranchWaitsForItsTurn()
    {
        var run = await fixture.Client.StartAsync("test.approval-becomes-tool", "x");
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingApproval, Patience, "the approval to be asked");

        // Decided before the signal arrives: the journal holds the approval's outcome (step 2) before the signal's (step 1).
        await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "treasurer", Actor: Tess));
        await Eventually.GetAsync(() => fixture.Client.GetJournalAsync(run.RunId), j => j.Any(r => r.Kind == "Approval"), Patience, "the approval's outcome");
        await fixture.Client.SignalAsync(run.RunId, "go", "now");
        await Eventually.GetAsync(() => fixture.Client.GetJournalAsync(run.RunId), j => j.Count(r => r.Kind == "Signal") == 1, Patience, "the signal's outcome");

        // The new code calls a tool where the journal asked an approval; the signal's branch waits for that step's turn.
        ApprovalBecomesToolWorkflow.AsToolCall[run.RunId] = true;
        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var done = await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status.IsTerminal(), Patience, "the re-execution to end the run");

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("non_determinism", done.Error!.Kind);
        Assert.Equal(0, GuardedTool.Invocations.GetValueOrDefault(run.RunId));
    }

    [Fact]
    public async Task AReplayPastAnApprovedToolCall_AsksAgain_AndReExecutesTheCallOnceApproved()
    {
        var source = await fixture.Client.StartAsync("test.tool-approval", GuardedTool.Name, actor: new SpineActor("ann", ["staff"]));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(source.RunId), i => i.Status == RunStatus.AwaitingApproval, Patience, "the source to wait");
        await fixture.Client.DecideApprovalAsync(source.RunId, new ApprovalVerdict(true, "treasurer", "first time", Actor: Tess));
        Assert.Equal(RunStatus.Completed, (await fixture.Client.WaitAsync(source.RunId, Patience)).Status);

        // From after the tool call: the approval before it is asked again, so the call after it runs again too.
        var replay = await fixture.Client.ReplayAsync(new ReplayRequest(source.RunId, FromStep: 3));
        var waiting = await Eventually.GetAsync(() => fixture.Client.GetAsync(replay.RunId), i => i.Status == RunStatus.AwaitingApproval || i.Status.IsTerminal(), Patience, "the replay to wait");
        await fixture.Client.DecideApprovalAsync(replay.RunId, new ApprovalVerdict(true, "treasurer", "second time", Actor: Tess));
        var done = await fixture.Client.WaitAsync(replay.RunId, Patience);

        Assert.Equal(RunStatus.AwaitingApproval, waiting.Status);
        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("""{"moved":7}""", JsonSerializer.Deserialize<string>(done.ResultJson!));
        Assert.Equal(1, GuardedTool.Invocations.GetValueOrDefault(replay.RunId));
        Assert.Equal(["RunStarted", "ApprovalRequested", "SignalReceived", "Approval", "Tool", "RunCompleted"], (await fixture.Client.GetJournalAsync(replay.RunId)).Select(r => r.Kind));
    }
}
