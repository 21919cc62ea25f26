using Npgsql;
using Orleans.TestingHost;
using Spine.Client;
using Spine.Errors;
using Spine.Hosting;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Runs;

/// <summary>A start either returns the run or leaves nothing started; a reused key with another request is refused.</summary>
[Collection(ClusterCollection.Name)]
public sealed class StartTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task StartAsync_SameKeyDifferentInputOrType_ThrowsIdempotencyKeyConflict()
    {
        var key = Guid.NewGuid().ToString();
        var first = await fixture.Client.StartAsync("test.steps", new StepsInput(2), idempotencyKey: key, accountId: "acme");

        var input = await Assert.ThrowsAsync<IdempotencyKeyConflictException>(() => fixture.Client.StartAsync("test.steps", new StepsInput(3), idempotencyKey: key, accountId: "acme"));
        var type = await Assert.ThrowsAsync<IdempotencyKeyConflictException>(() => fixture.Client.StartAsync("test.values", 1, idempotencyKey: key, accountId: "acme"));

        Assert.Equal(first.RunId, input.RunId);
        Assert.Equal("input", input.Difference);
        Assert.Contains("test.values", type.Difference, StringComparison.Ordinal);
        Assert.Equal("idempotency_key_conflict", type.Kind);
        var done = await fixture.Client.WaitAsync(first.RunId, Patience);
        Assert.Equal("3", done.ResultJson);

        // The same request, even with its JSON spelled differently, is the same start.
        var again = await fixture.Client.StartAsync(new StartRunRequest("test.steps", """{ "sleepMilliseconds": 0, "steps": 2 }""", IdempotencyKey: key, AccountId: "acme"));
        Assert.Equal(first.RunId, again.RunId);
    }

    [Theory]
    [InlineData("acme\nkey", "k")]
    [InlineData("acme", "k\u0000")]
    [InlineData("ac\u001bme", null)]
    public async Task StartAsync_ControlCharactersInAccountOrKey_ThrowsInvalidIdentifier(string account, string? key)
    {
        var error = await Assert.ThrowsAsync<InvalidIdentifierException>(() => fixture.Client.StartAsync("test.steps", new StepsInput(1), idempotencyKey: key, accountId: account));

        Assert.Equal("invalid_identifier", error.Kind);
        Assert.Equal(account.Any(char.IsControl) ? "account id" : "idempotency key", error.What);
    }

    [Fact]
    public async Task StartAsync_UnpairedSurrogateInKey_ThrowsInvalidIdentifier()
    {
        var key = "bad-" + (char)0xD800 + "-surrogate";

        var error = await Assert.ThrowsAsync<InvalidIdentifierException>(() => fixture.Client.StartAsync("test.steps", new StepsInput(1), idempotencyKey: key, accountId: "acme"));

        Assert.Equal(4, error.Position);
    }

    [Fact]
    public async Task Grain_ControlCharacterInKey_IsRefusedThereToo()
    {
        var grain = fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(RunIds.New());

        await Assert.ThrowsAsync<InvalidIdentifierException>(() => grain.StartAsync(new StartRunRequest("test.steps", """{"steps":1}""", IdempotencyKey: "a\nb")));
    }
}

/// <summary>A start whose acknowledgement is lost: the commit reached PostgreSQL, the reply never came back.</summary>
public sealed class LostAcknowledgementTests
{
    [Fact]
    public async Task StartAsync_CommitLandedButReplyLost_ReturnsTheRunOnce()
    {
        var postgres = await TestPostgres.GetAsync();
        var target = new NpgsqlConnectionStringBuilder(postgres.RuntimeConnectionString);
        await using var proxy = new FaultProxy(target.Port);
        var throughProxy = new NpgsqlConnectionStringBuilder(postgres.RuntimeConnectionString) { Port = proxy.Port, Timeout = 5 }.ConnectionString;
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddSpine(throughProxy, null, o =>
            {
                o.ResumeReminderPeriod = TimeSpan.FromSeconds(2);
                o.Audit.Key = TestAudit.Key;
                TestSpine.OnSharedDatabase(o);
            });
            silo.Services.AddSpineWorkflow<StepsWorkflow, StepsInput, int>();
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        var client = new SpineClient(cluster.Client);

        // Warm the pool: the start below then commits over a connection that is already open.
        await client.WaitAsync((await client.StartAsync("test.steps", new StepsInput(1))).RunId, TimeSpan.FromSeconds(30));
        proxy.SwallowReplies = true;
        var start = client.StartAsync("test.steps", new StepsInput(2));
        await Task.Delay(500);
        proxy.CutAll();
        proxy.SwallowReplies = false;

        var run = await start;
        var done = await client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal(1L, await postgres.ScalarAsync<long>("SELECT count(*) FROM spine_journal WHERE run_id = @id AND kind = 0", ("id", run.RunId)));
        Assert.Equal(1, Effects.Of(run.RunId, "step-1"));
        await cluster.StopAllSilosAsync();
    }
}
