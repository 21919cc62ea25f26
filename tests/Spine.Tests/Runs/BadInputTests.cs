using System.Text.Json;
using Spine.Errors;
using Spine.Journal;
using Spine.Runs;
using Spine.Storage;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Runs;

[Collection(ClusterCollection.Name)]
public sealed class BadInputTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task StartAsync_UnknownWorkflowType_ThrowsUnknownWorkflowAndStoresNothing()
    {
        var request = new StartRunRequest("no.such.workflow", "{}", IdempotencyKey: Guid.NewGuid().ToString());

        var error = await Assert.ThrowsAsync<UnknownWorkflowException>(() => fixture.Client.StartAsync(request));

        Assert.Equal("no.such.workflow", error.WorkflowType);
        Assert.Equal("unknown_workflow", error.Kind);
        await Assert.ThrowsAsync<RunNotFoundException>(() => fixture.Client.GetAsync(RunIds.For(request)));
    }

    [Fact]
    public async Task StartAsync_UnknownWorkflowVersion_ThrowsUnknownWorkflow()
    {
        var error = await Assert.ThrowsAsync<UnknownWorkflowException>(() =>
            fixture.Client.StartAsync(new StartRunRequest("test.steps", "{\"steps\":1}", WorkflowVersion: 99)));

        Assert.Equal(99, error.Version);
    }

    [Theory]
    [InlineData("{\"steps\": ")]
    [InlineData("not json")]
    [InlineData("{\"steps\": \"four\"}")]
    public async Task StartAsync_MalformedInput_ThrowsInvalidPayloadAndStoresNothing(string input)
    {
        var request = new StartRunRequest("test.steps", input, IdempotencyKey: Guid.NewGuid().ToString());

        var error = await Assert.ThrowsAsync<InvalidPayloadException>(() => fixture.Client.StartAsync(request));

        Assert.Contains("test.steps", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<RunNotFoundException>(() => fixture.Client.GetAsync(RunIds.For(request)));
        Assert.Equal(0L, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_runs WHERE run_id = @id", ("id", RunIds.For(request))));
    }

    [Fact]
    public async Task StartAsync_InputOverCeiling_ThrowsPayloadTooLargeAndStoresNothing()
    {
        var input = JsonSerializer.Serialize(new { steps = 1, padding = new string('p', ClusterFixture.MaxPayloadBytes) });
        var request = new StartRunRequest("test.steps", input, IdempotencyKey: Guid.NewGuid().ToString());

        var error = await Assert.ThrowsAsync<PayloadTooLargeException>(() => fixture.Client.StartAsync(request));

        Assert.Equal(ClusterFixture.MaxPayloadBytes, error.LimitBytes);
        Assert.True(error.SizeBytes > error.LimitBytes);
        await Assert.ThrowsAsync<RunNotFoundException>(() => fixture.Client.GetAsync(RunIds.For(request)));
    }

    [Fact]
    public async Task StepResultOverCeiling_FailsRunWithPayloadTooLargeRecorded()
    {
        var run = await fixture.Client.StartAsync("test.big", ClusterFixture.MaxPayloadBytes + 10);

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("payload_too_large", done.Error!.Kind);
        Assert.Equal("produce", done.Error.StepName);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal("error", journal.Single(r => r.Name == "produce").Outcome);
    }

    [Fact]
    public async Task CallToolAsync_UnknownTool_FailsRunWithUnknownTool()
    {
        var run = await fixture.Client.StartAsync("test.tool", new { tool = "no_such_tool", arguments = new { } });

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("unknown_tool", done.Error!.Kind);
        Assert.Contains("no_such_tool", done.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CallToolAsync_ToolNameWithNulCharacter_FailsRunAndJournalStaysIntact()
    {
        var run = await fixture.Client.StartAsync("test.tool", new { tool = "evil\u0000tool", arguments = new { } });

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("unknown_tool", done.Error!.Kind);
        Assert.True((await fixture.Client.VerifyJournalAsync(run.RunId)).Intact);
        Assert.Equal("evil\uFFFDtool", (await fixture.Client.GetJournalAsync(run.RunId)).Single(r => r.Kind == "Tool").Name);
    }

    [Fact]
    public async Task GetAsync_NeverStartedRun_ThrowsRunNotFound()
    {
        var id = RunIds.New();

        var error = await Assert.ThrowsAsync<RunNotFoundException>(() => fixture.Client.GetAsync(id));

        Assert.Equal(id, error.RunId);
    }

    [Fact]
    public async Task JournalStore_UnreachableDatabase_ThrowsStorageUnavailable()
    {
        var dead = $"Host=127.0.0.1;Port={Local.Network.LoopbackPorts.FreePort()};Username=nobody;Timeout=2";
        await using var database = new SpineDatabase(Microsoft.Extensions.Options.Options.Create(new Hosting.SpineOptions { ConnectionString = dead }));
        var store = new JournalStore(database);

        var error = await Assert.ThrowsAsync<StorageUnavailableException>(() => store.ReadAsync("r-x"));

        Assert.Equal("journal read", error.Operation);
        Assert.Equal("storage_unavailable", error.Kind);
    }

    [Fact]
    public async Task JournalWriter_UnreachableDatabase_FailsAppendWithStorageUnavailable()
    {
        var dead = $"Host=127.0.0.1;Port={Local.Network.LoopbackPorts.FreePort()};Username=nobody;Timeout=2";
        var options = Microsoft.Extensions.Options.Options.Create(new Hosting.SpineOptions { ConnectionString = dead });
        await using var database = new SpineDatabase(options);
        await using var writer = new JournalWriter(database, options, Microsoft.Extensions.Logging.Abstractions.NullLogger<JournalWriter>.Instance);
        var row = new JournalRow("r-x", 0, JournalKind.RunStarted, null, "RunStarted", true, "{}", DateTimeOffset.UtcNow, JournalHash.Genesis, new byte[32]);

        var error = await Assert.ThrowsAsync<StorageUnavailableException>(() => writer.AppendAsync(row, null));

        Assert.Equal("journal append", error.Operation);
    }

    [Fact]
    public void Tune_MalformedConnectionString_ThrowsStorageUnavailableNamingIt()
    {
        var error = Assert.Throws<StorageUnavailableException>(() => SpineDatabase.Tune("Host=127.0.0.1;Port=notaport;;=="));

        Assert.Contains("connection string is malformed", error.Message, StringComparison.Ordinal);
    }
}
