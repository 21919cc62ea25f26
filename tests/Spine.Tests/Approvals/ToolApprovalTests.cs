using System.Text.Json;
using Spine.Agents;
using Spine.Approvals;
using Spine.Identity;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Approvals;

/// <summary>
/// Tool calls that wait for a human first, on a real cluster: by the tool's definition, by a policy for the starter's
/// role, and by the confidence gate on a model's proposed call. Nothing reaches the tool before the approval.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ToolApprovalTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task AToolThatRequiresApproval_ByItsDefinition_RunsOnlyOnceATreasurerApproves()
    {
        var run = await fixture.Client.StartAsync("test.tool-approval", GuardedTool.Name, actor: new SpineActor("ann", ["staff"]));
        var waiting = await WaitingAsync(run.RunId);
        var invokedWhileWaiting = GuardedTool.Invocations.GetValueOrDefault(run.RunId);

        await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "treasurer", "fine", Actor: new SpineActor("tess", ["treasurer"])));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        var pending = Assert.Single(waiting.Approvals);
        Assert.Equal(ToolApprovals.StepName(GuardedTool.Name), pending.Name);
        Assert.Equal(["treasurer"], pending.ApproverRoles);
        var proposed = JsonDocument.Parse(pending.ProposedActionJson!).RootElement;
        Assert.Equal((GuardedTool.Name, 7), (proposed.GetProperty("tool").GetString(), proposed.GetProperty("arguments").GetProperty("x").GetInt32()));
        Assert.Contains("requires approval", proposed.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal(0, invokedWhileWaiting);
        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("""{"moved":7}""", JsonSerializer.Deserialize<string>(done.ResultJson!));
        Assert.Equal(1, GuardedTool.Invocations.GetValueOrDefault(run.RunId));
        Assert.Equal(["RunStarted", "ApprovalRequested", "SignalReceived", "Approval", "Tool", "RunCompleted"], (await fixture.Client.GetJournalAsync(run.RunId)).Select(r => r.Kind));
    }

    [Fact]
    public async Task ARejectedToolCall_NeverReachesTheTool_AndTheWorkflowGetsATypedError()
    {
        var run = await fixture.Client.StartAsync("test.tool-approval", GuardedTool.Name, actor: new SpineActor("ann", ["staff"]));
        await WaitingAsync(run.RunId);

        await fixture.Client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(false, "treasurer", "not today", Actor: new SpineActor("tess", ["treasurer"])));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("rejected:approval_rejected:tess:not today", JsonSerializer.Deserialize<string>(done.ResultJson!));
        Assert.Equal(0, GuardedTool.Invocations.GetValueOrDefault(run.RunId));
        Assert.DoesNotContain("Tool", (await fixture.Client.GetJournalAsync(run.RunId)).Select(r => r.Kind));
    }

    [Fact]
    public async Task APolicyForARole_MakesItsCallsWaitForApproval_AndOtherRolesCallsDoNot()
    {
        var intern = await fixture.Client.StartAsync("test.tool-approval", "test_echo", actor: new SpineActor("ivy", ["intern"]));
        var staff = await fixture.Client.StartAsync("test.tool-approval", "test_echo", actor: new SpineActor("sam", ["staff"]));
        var waiting = await WaitingAsync(intern.RunId);
        var staffDone = await fixture.Client.WaitAsync(staff.RunId, Patience);

        await Assert.ThrowsAsync<Errors.ApprovalForbiddenException>(() =>
            fixture.Client.DecideApprovalAsync(intern.RunId, new ApprovalVerdict(true, "treasurer", Actor: new SpineActor("tess", ["treasurer"]))));
        await fixture.Client.DecideApprovalAsync(intern.RunId, new ApprovalVerdict(true, "lead", Actor: new SpineActor("lee", ["lead"])));
        var internDone = await fixture.Client.WaitAsync(intern.RunId, Patience);

        Assert.Equal(["lead"], Assert.Single(waiting.Approvals).ApproverRoles);
        Assert.Contains("policy interns", Assert.Single(waiting.Approvals).Question, StringComparison.Ordinal);
        Assert.Equal((RunStatus.Completed, RunStatus.Completed), (internDone.Status, staffDone.Status));
        Assert.DoesNotContain("ApprovalRequested", (await fixture.Client.GetJournalAsync(staff.RunId)).Select(r => r.Kind));
    }

    [Fact]
    public async Task AModelsCall_BelowThePolicysConfidenceGate_WaitsForAReviewer_AndOneAboveItDoesNot()
    {
        var gated = new SpineActor("gus", ["gated"]);
        var unsure = await fixture.Client.StartAsync("agent", new AgentInput("confidence=0.4", Tools: ["test_echo"], ChatClient: "confident"), actor: gated);
        var sure = await fixture.Client.StartAsync("agent", new AgentInput("confidence=0.9", Tools: ["test_echo"], ChatClient: "confident"), actor: gated);
        var waiting = await WaitingAsync(unsure.RunId);
        var sureDone = await fixture.Client.WaitAsync(sure.RunId, Patience);

        await fixture.Client.DecideApprovalAsync(unsure.RunId, new ApprovalVerdict(true, "reviewer", Actor: new SpineActor("rita", ["reviewer"])));
        var unsureDone = await fixture.Client.WaitAsync(unsure.RunId, Patience);

        var pending = Assert.Single(waiting.Approvals);
        Assert.Equal(["reviewer"], pending.ApproverRoles);
        Assert.Contains("confidence (0.4) is below policy gated's gate (0.7)", pending.Question, StringComparison.Ordinal);
        Assert.Equal(0.4, JsonDocument.Parse(pending.ProposedActionJson!).RootElement.GetProperty("confidence").GetDouble());

        // The stated confidence is taken out of the arguments: the tool's schema allows no other property.
        Assert.Equal(RunStatus.Completed, unsureDone.Status);
        Assert.Equal(RunStatus.Completed, sureDone.Status);
        Assert.Equal("done: {\"y\":\"7\"}", JsonSerializer.Deserialize<AgentOutput>(unsureDone.ResultJson!, new JsonSerializerOptions(JsonSerializerDefaults.Web))!.Answer);
        Assert.DoesNotContain("ApprovalRequested", (await fixture.Client.GetJournalAsync(sure.RunId)).Select(r => r.Kind));
    }

    private async Task<RunInfo> WaitingAsync(string runId) =>
        await Eventually.GetAsync(() => fixture.Client.GetAsync(runId), r => r.Status == RunStatus.AwaitingApproval, Patience, $"run {runId} to wait for approval");
}
