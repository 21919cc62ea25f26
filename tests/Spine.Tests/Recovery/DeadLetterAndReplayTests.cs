using Spine.Errors;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Recovery;

[Collection(ClusterCollection.Name)]
public sealed class DeadLetterAndReplayTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private Task<RunInfo> StartAsync(string mode) =>
        fixture.Client.StartAsync(new StartRunRequest("test.params", "10", Parameters: new Dictionary<string, string> { ["mode"] = mode }));

    [Fact]
    public async Task ReplayFromStep3_WithChangedParameter_ReusesEarlierStepsAndRecordsOrigin()
    {
        var source = await StartAsync("broken");
        var failed = await fixture.Client.WaitAsync(source.RunId, Patience);
        Assert.Equal(RunStatus.Failed, failed.Status);
        Assert.Equal(3, failed.Error!.Step);

        var replay = await fixture.Client.ReplayAsync(new ReplayRequest(source.RunId, FromStep: 3, Parameters: new Dictionary<string, string> { ["mode"] = "fixed" }));
        var done = await fixture.Client.WaitAsync(replay.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal("\"fixed:100\"", done.ResultJson);
        Assert.Equal(new RunOrigin(source.RunId, 3), done.Origin);
        Assert.Equal(0, Effects.Of(replay.RunId, "step-1"));
        Assert.Equal(0, Effects.Of(replay.RunId, "step-2"));
        Assert.Equal(1, Effects.Of(replay.RunId, "step-3"));
        Assert.Equal(1, Effects.Of(replay.RunId, "step-4"));
        Assert.True((await fixture.Client.VerifyJournalAsync(replay.RunId)).Intact);
    }

    [Fact]
    public async Task ReplayCompletedRun_WithChangedInput_FromStep2()
    {
        var source = await StartAsync("fixed");
        await fixture.Client.WaitAsync(source.RunId, Patience);

        var replay = await fixture.Client.ReplayAsync(new ReplayRequest(source.RunId, FromStep: 2, InputJson: "100"));
        var done = await fixture.Client.WaitAsync(replay.RunId, Patience);

        Assert.Equal("\"fixed:910\"", done.ResultJson);
        Assert.Equal(0, Effects.Of(replay.RunId, "step-1"));
        Assert.Equal(1, Effects.Of(replay.RunId, "step-2"));
    }

    [Fact]
    public async Task DeadLetteredRun_ListedInspectedReplayedAndDiscarded()
    {
        var source = await StartAsync("flaky");
        var dead = await fixture.Client.WaitAsync(source.RunId, Patience);
        Assert.Equal(RunStatus.DeadLettered, dead.Status);

        var listed = (await fixture.Client.ListDeadLettersAsync(1000)).Single(r => r.RunId == source.RunId);
        Assert.Equal(3, listed.Error!.Step);
        Assert.Equal("step-3", listed.Error.StepName);
        var journal = await fixture.Client.GetJournalAsync(source.RunId);
        Assert.Equal("RunDeadLettered", journal[^1].Kind);

        var replay = await fixture.Client.ReplayAsync(new ReplayRequest(source.RunId, Parameters: new Dictionary<string, string> { ["mode"] = "fixed" }, IdempotencyKey: "fix-1"));
        var again = await fixture.Client.ReplayAsync(new ReplayRequest(source.RunId, Parameters: new Dictionary<string, string> { ["mode"] = "fixed" }, IdempotencyKey: "fix-1"));
        var done = await fixture.Client.WaitAsync(replay.RunId, Patience);
        Assert.Equal(replay.RunId, again.RunId);
        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal(3, done.Origin!.FromStep);
        Assert.Equal(0, Effects.Of(replay.RunId, "step-2"));

        var discarded = await fixture.Client.DiscardAsync(source.RunId, "replayed as " + replay.RunId);
        Assert.Equal(RunStatus.Discarded, discarded.Status);
        Assert.DoesNotContain(await fixture.Client.ListDeadLettersAsync(1000), r => r.RunId == source.RunId);
        await Assert.ThrowsAsync<InvalidRunStateException>(() => fixture.Client.DiscardAsync(replay.RunId));
    }

    [Fact]
    public async Task ReplayFailedSaga_FromStep3_ReusesToolStepsWithoutInvokingThem()
    {
        var source = await fixture.Client.StartAsync("test.saga", new SagaInput());
        Assert.Equal(RunStatus.Failed, (await fixture.Client.WaitAsync(source.RunId, Patience)).Status);
        Assert.Equal(["reserve", "charge", "ship", "refund", "release"], EffectTool.CallsOf(source.RunId).Select(c => c.Action));

        var replay = await fixture.Client.ReplayAsync(new ReplayRequest(source.RunId, FromStep: 3, InputJson: "{\"failShip\":null}"));
        var done = await fixture.Client.WaitAsync(replay.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal(["ship"], EffectTool.CallsOf(replay.RunId).Select(c => c.Action));
        Assert.Equal(5, EffectTool.CallsOf(source.RunId).Count);
        var journal = await fixture.Client.GetJournalAsync(replay.RunId);
        Assert.Equal(["RunStarted", "Tool", "Tool", "Tool", "RunCompleted"], journal.Select(r => r.Kind));
    }

    [Fact]
    public async Task Replay_OfUnfinishedRun_IsRefused()
    {
        var source = await fixture.Client.StartAsync("test.steps", new StepsInput(2, SleepMilliseconds: 60_000));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(source.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run to sleep");

        await Assert.ThrowsAsync<InvalidRunStateException>(() => fixture.Client.ReplayAsync(new ReplayRequest(source.RunId)));
        await Assert.ThrowsAsync<RunNotFoundException>(() => fixture.Client.ReplayAsync(new ReplayRequest("r-none")));
        await fixture.Client.CancelAsync(source.RunId);
    }
}
