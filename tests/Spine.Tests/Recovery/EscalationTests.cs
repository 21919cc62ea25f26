using Spine.Errors;
using Spine.Identity;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Recovery;

[Collection(ClusterCollection.Name)]
public sealed class EscalationTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private async Task<RunInfo> EscalatedRunAsync()
    {
        var run = await fixture.Client.StartAsync("test.escalating", 41);
        return await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingOperator, Patience, "the escalation");
    }

    [Fact]
    public async Task ExhaustedStep_PausesAwaitingOperator_SkipWithResultContinues()
    {
        var waiting = await EscalatedRunAsync();

        Assert.Equal(1, waiting.Escalation!.Step);
        Assert.Equal("fragile", waiting.Escalation.StepName);
        Assert.Contains("fragile is down", waiting.Escalation.Error.Message, StringComparison.Ordinal);
        Assert.Contains(await fixture.Client.ListAsync(new RunQuery { Status = RunStatus.AwaitingOperator, Limit = 1000 }), r => r.RunId == waiting.RunId);

        await fixture.Client.ResolveEscalationAsync(waiting.RunId, new OperatorDecision(OperatorAction.Skip, "99", "supplied by hand", new SpineActor("alice", ["operator"])));
        var done = await fixture.Client.WaitAsync(waiting.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("\"100\"", done.ResultJson);
        var decided = (await fixture.Client.GetJournalAsync(waiting.RunId)).Single(r => r.Kind == "OperatorDecided");
        Assert.Contains("\"alice\"", decided.PayloadJson, StringComparison.Ordinal);
        Assert.Contains("\"operator\"", decided.PayloadJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Decision_ByAnActorWithAnUnprintableId_IsRefusedTypedAndChangesNothing()
    {
        var waiting = await EscalatedRunAsync();

        await Assert.ThrowsAsync<InvalidIdentifierException>(() =>
            fixture.Client.ResolveEscalationAsync(waiting.RunId, new OperatorDecision(OperatorAction.Fail, Actor: new SpineActor("bob\nadmin"))));

        Assert.Equal(RunStatus.AwaitingOperator, (await fixture.Client.GetAsync(waiting.RunId)).Status);
        Assert.DoesNotContain(await fixture.Client.GetJournalAsync(waiting.RunId), r => r.Kind == "OperatorDecided");
        await fixture.Client.ResolveEscalationAsync(waiting.RunId, new OperatorDecision(OperatorAction.Skip, "1", Actor: new SpineActor("bob")));
        Assert.Equal(RunStatus.Completed, (await fixture.Client.WaitAsync(waiting.RunId, Patience)).Status);
    }

    [Fact]
    public async Task Escalated_RetryAfterFix_RunsStepAgainAndCompletes()
    {
        var waiting = await EscalatedRunAsync();
        Effects.Count(waiting.RunId, "healed");

        await fixture.Client.ResolveEscalationAsync(waiting.RunId, new OperatorDecision(OperatorAction.Retry));
        var done = await fixture.Client.WaitAsync(waiting.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("\"42\"", done.ResultJson);
        Assert.Equal(3, Effects.Of(waiting.RunId, "fragile"));
    }

    [Fact]
    public async Task Escalated_Fail_FailsRun()
    {
        var waiting = await EscalatedRunAsync();

        await fixture.Client.ResolveEscalationAsync(waiting.RunId, new OperatorDecision(OperatorAction.Fail, Reason: "vendor gone"));
        var done = await fixture.Client.WaitAsync(waiting.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("operator_failed", done.Error!.Kind);
        Assert.Contains("vendor gone", done.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Escalated_SurvivesDeactivation_AndStillAcceptsDecision()
    {
        var waiting = await EscalatedRunAsync();

        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(waiting.RunId));
        var after = await fixture.Client.GetAsync(waiting.RunId);
        Assert.Equal(RunStatus.AwaitingOperator, after.Status);
        Assert.Equal(2, Effects.Of(waiting.RunId, "fragile"));

        await fixture.Client.ResolveEscalationAsync(waiting.RunId, new OperatorDecision(OperatorAction.Skip, "1"));
        var done = await fixture.Client.WaitAsync(waiting.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal(2, Effects.Of(waiting.RunId, "fragile"));
    }

    [Fact]
    public async Task Escalated_Cancelled_EndsCancelledAndRefusesLaterDecision()
    {
        var waiting = await EscalatedRunAsync();

        await fixture.Client.CancelAsync(waiting.RunId, "no longer needed");
        var done = await fixture.Client.WaitAsync(waiting.RunId, Patience);

        Assert.Equal(RunStatus.Cancelled, done.Status);
        await Assert.ThrowsAsync<InvalidRunStateException>(() =>
            fixture.Client.ResolveEscalationAsync(waiting.RunId, new OperatorDecision(OperatorAction.Retry)));
        Assert.Equal(RunStatus.Cancelled, (await fixture.Client.ListAsync(new RunQuery { Status = RunStatus.Cancelled, Limit = 1000 })).Single(r => r.RunId == waiting.RunId).Status);
    }

    [Fact]
    public async Task ParallelDecisions_OneIsJournaled_OthersRefused_SameBranchAfterReactivation()
    {
        var waiting = await EscalatedRunAsync();
        var grain = fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(waiting.RunId);

        // Five operators decide at once, each supplying a different result.
        var attempts = Enumerable.Range(1, 5)
            .Select(i => grain.ResolveEscalationAsync(new OperatorDecision(OperatorAction.Skip, $"{i * 10}", "parallel", new SpineActor($"operator-{i}"))))
            .ToList();
        var outcomes = new List<(int Index, Exception? Error)>();
        for (var i = 0; i < attempts.Count; i++)
        {
            try
            {
                await attempts[i];
                outcomes.Add((i + 1, null));
            }
            catch (Exception e)
            {
                outcomes.Add((i + 1, e));
            }
        }

        var winner = Assert.Single(outcomes, o => o.Error is null).Index;
        Assert.All(outcomes.Where(o => o.Error is not null), o => Assert.IsType<InvalidRunStateException>(o.Error));
        var live = await fixture.Client.WaitAsync(waiting.RunId, Patience);
        Assert.Equal(RunStatus.Completed, live.Status);
        Assert.Equal($"\"{winner * 10 + 1}\"", live.ResultJson);

        var decided = (await fixture.Client.GetJournalAsync(waiting.RunId)).Where(r => r.Kind == "OperatorDecided").ToList();
        Assert.Contains($"operator-{winner}", Assert.Single(decided).PayloadJson, StringComparison.Ordinal);

        // A reactivation replays the journal: the same decision, the same result.
        await fixture.Cluster.DeactivateAsync(grain);
        var replayed = await fixture.Client.GetAsync(waiting.RunId);
        Assert.Equal(live.ResultJson, replayed.ResultJson);
        Assert.Single(await fixture.Client.GetJournalAsync(waiting.RunId), r => r.Kind == "OperatorDecided");
    }

    [Fact]
    public async Task Decision_OnRunNotAwaitingOperator_IsRefused()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(1));
        await fixture.Client.WaitAsync(run.RunId, Patience);

        var error = await Assert.ThrowsAsync<InvalidRunStateException>(() =>
            fixture.Client.ResolveEscalationAsync(run.RunId, new OperatorDecision(OperatorAction.Retry)));

        Assert.Equal(RunStatus.Completed, error.Status);
    }
}
