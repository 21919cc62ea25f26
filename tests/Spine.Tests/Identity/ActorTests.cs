using Microsoft.Extensions.Options;
using Spine.Client;
using Spine.Errors;
using Spine.Identity;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Identity;

/// <summary>A run records who started it, in its journal (so the hash chain covers it) and in its snapshot.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ActorTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Start_AsAnActor_RecordsWhoStartedTheRunInTheJournalAndTheSnapshot()
    {
        var actor = new SpineActor("svc:billing", ["starter", "operator"]);

        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(1), actor: actor);
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        AssertActor(actor, run.StartedBy);
        AssertActor(actor, done.StartedBy);
        var started = (await fixture.Client.GetJournalAsync(run.RunId))[0];
        Assert.Contains("\"svc:billing\"", started.PayloadJson, StringComparison.Ordinal);
        Assert.True((await fixture.Client.VerifyJournalAsync(run.RunId)).Intact);
    }

    [Fact]
    public async Task Start_AsAnActor_RunReadBackFromItsJournalStillNamesTheActor()
    {
        // The journal stores the actor as JSON: a run started by an actor must load again after deactivation.
        var actor = new SpineActor("svc:reload", ["starter"]);
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(1), actor: actor);
        await fixture.Client.WaitAsync(run.RunId, Patience);

        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var reloaded = await fixture.Client.GetAsync(run.RunId);

        Assert.Equal(RunStatus.Completed, reloaded.Status);
        AssertActor(actor, reloaded.StartedBy);
    }

    [Fact]
    public async Task Start_WithoutAnActor_TakesTheClientsConfiguredOne()
    {
        var options = new SpineClientOptions { ConnectionString = "Host=127.0.0.1", ActorId = "svc:checkout" };
        options.ActorRoles.Add("starter");
        var client = new SpineClient(fixture.Cluster.Client, Options.Create(options));

        var run = await client.StartAsync("test.steps", new StepsInput(1));
        var named = await client.StartAsync("test.steps", new StepsInput(1), actor: new SpineActor("alice"));

        AssertActor(new SpineActor("svc:checkout", ["starter"]), run.StartedBy);
        AssertActor(new SpineActor("alice"), named.StartedBy);
        Assert.Null((await fixture.Client.StartAsync("test.steps", new StepsInput(1))).StartedBy);
    }

    [Fact]
    public async Task Replay_AsAnActor_RecordsTheReplayerAsWhoStartedTheReplay()
    {
        var source = await fixture.Client.StartAsync("test.steps", new StepsInput(2), actor: new SpineActor("svc:first", ["starter"]));
        await fixture.Client.WaitAsync(source.RunId, Patience);
        var replayer = new SpineActor("ops:dana", ["operator"]);

        var replay = await fixture.Client.ReplayAsync(new ReplayRequest(source.RunId, FromStep: 2, Actor: replayer));
        await fixture.Client.WaitAsync(replay.RunId, Patience);

        AssertActor(replayer, replay.StartedBy);
        Assert.Contains("\"ops:dana\"", (await fixture.Client.GetJournalAsync(replay.RunId))[0].PayloadJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cancel_AsAnActor_JournalsWhoCancelled()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(50, SleepMilliseconds: 100));

        await fixture.Client.CancelAsync(run.RunId, "wrong customer", new SpineActor("alice", ["operator"]));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Cancelled, done.Status);
        var request = (await fixture.Client.GetJournalAsync(run.RunId)).Single(r => r.Kind == "CancelRequested");
        Assert.Contains("\"alice\"", request.PayloadJson, StringComparison.Ordinal);
        Assert.Contains("wrong customer", request.PayloadJson, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidIdentifierException>(() => fixture.Client.CancelAsync(run.RunId, actor: new SpineActor("al\u0000ice")));
    }

    [Theory]
    [InlineData("svc\nbilling", "starter")]
    [InlineData("", "starter")]
    [InlineData("svc:billing", "oper\u0000ator")]
    public async Task Start_AsAnActorWithAnUnprintableIdOrRole_IsRefusedTypedAndStartsNothing(string id, string role)
    {
        var key = Guid.NewGuid().ToString("N");

        var error = await Assert.ThrowsAsync<InvalidIdentifierException>(() => fixture.Client.StartAsync("test.steps", new StepsInput(1), idempotencyKey: key, actor: new SpineActor(id, [role])));

        Assert.Equal("invalid_identifier", error.Kind);
        await Assert.ThrowsAsync<RunNotFoundException>(() => fixture.Client.GetAsync(RunIds.FromIdempotencyKey(null, key)));
    }

    [Fact]
    public void ClientOptions_WithAnUnprintableActor_NameTheSetting()
    {
        var options = new SpineClientOptions { ConnectionString = "Host=127.0.0.1", ActorId = "svc\u0007x" };

        var error = Assert.Throws<InvalidOperationException>(options.Validate);

        Assert.Contains("SpineClient:ActorId", error.Message, StringComparison.Ordinal);
    }

    private static void AssertActor(SpineActor expected, SpineActor? actual)
    {
        Assert.NotNull(actual);
        Assert.Equal(expected.Id, actual.Id);
        Assert.Equal(expected.Roles, actual.Roles);
    }
}
