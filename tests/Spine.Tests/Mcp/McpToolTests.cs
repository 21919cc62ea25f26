using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using Spine.Client;
using Spine.Hosting;
using Spine.Mcp;
using Spine.Runs;
using Spine.Tests.Infrastructure;
using Spine.Workflows;

namespace Spine.Tests.Mcp;

/// <summary>A silo, its own database, and the test MCP server (tests/Spine.McpTestServer) over stdio as its <c>test</c> server.</summary>
public sealed class McpFixture : IAsyncLifetime
{
    public string VariantFile { get; } = Path.Combine(Path.GetTempPath(), $"spine-mcp-variant-{Guid.NewGuid():N}");

    public string Markers { get; } = Directory.CreateTempSubdirectory("spine-mcp-markers-").FullName;

    public InProcessTestCluster Cluster { get; private set; } = null!;

    public ISpineClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await File.WriteAllTextAsync(VariantFile, "1");
        var postgres = await TestPostgres.CreateDatabaseAsync("spine_mcp");
        var server = AppContext.BaseDirectory.Replace($"{Path.DirectorySeparatorChar}Spine.Tests{Path.DirectorySeparatorChar}", $"{Path.DirectorySeparatorChar}Spine.McpTestServer{Path.DirectorySeparatorChar}", StringComparison.Ordinal);
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddSpine(postgres.RuntimeConnectionString, null, o =>
            {
                o.Audit.Key = TestAudit.Key;
                o.Retry.Tool = new Spine.Recovery.RetryPolicy { MaxAttempts = 3, InitialDelay = TimeSpan.FromMilliseconds(50), Jitter = 0 };
            });
            silo.Services.Configure<McpOptions>(o => o.Servers.Add(new McpServerSettings
            {
                Name = "test",
                Command = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet",
                Arguments = [Path.Combine(server, "Spine.McpTestServer.dll"), VariantFile, Markers],
                Effect = Spine.Tools.ToolEffect.ReadOnly,
                RefreshInterval = TimeSpan.FromMilliseconds(500),
            }));
            silo.Services.AddSpineWorkflow<ToolCallWorkflow, ToolCallInput, JsonElement>();
            silo.Services.AddSpineWorkflow<McpPinWorkflow, int, string>();
        });
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        Client = new SpineClient(Cluster.Client);
    }

    public async Task DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
        File.Delete(VariantFile);
        Directory.Delete(Markers, recursive: true);
    }
}

/// <summary>Calls <c>test_lookup</c>, waits for a signal, calls it again; answers with the two answers.</summary>
[Workflow(Name)]
public sealed class McpPinWorkflow : IWorkflow<int, string>
{
    public const string Name = "test.mcp-pin";

    public async Task<string> RunAsync(IWorkflowContext context, int input)
    {
        var first = await context.CallToolAsync("test_lookup", JsonSerializer.SerializeToElement(new { q = "a" }));
        await context.WaitForSignalAsync<string>("go", Timeout.InfiniteTimeSpan);
        var second = await context.CallToolAsync("test_lookup", JsonSerializer.SerializeToElement(new { q = "b" }));
        return $"{first.GetRawText()} {second.GetRawText()}";
    }
}

/// <summary>An MCP server's tools as Spine tools: validated, journaled, retried when the server dies, versioned by their schemas.</summary>
public sealed class McpToolTests(McpFixture fixture) : IClassFixture<McpFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task AServersTool_IsCalledThroughTheContract_AndJournaledWithItsVersion()
    {
        var done = await RunAsync("test_lookup", new { q = "spine" });
        var invalid = await RunAsync("test_lookup", new { q = 5 });

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Contains("spine (v1)", done.ResultJson, StringComparison.Ordinal);
        var row = (await fixture.Client.GetJournalAsync(done.RunId)).Single(r => r.Kind == "Tool");
        Assert.Equal("1.0.0", JsonDocument.Parse(row.PayloadJson!).RootElement.GetProperty("version").GetString());
        Assert.Equal(RunStatus.Failed, invalid.Status);
        Assert.Equal("schema_validation", invalid.Error!.Kind);
    }

    [Fact]
    public async Task AServerThatDiesMidCall_IsStartedAgain_AndTheCallIsRetried()
    {
        var done = await RunAsync("test_die_once", new { marker = Guid.NewGuid().ToString("N") });

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Contains("survived", done.ResultJson, StringComparison.Ordinal);
        var failed = Assert.Single(await fixture.Client.GetJournalAsync(done.RunId), r => r.Kind == "AttemptFailed");
        Assert.Contains("MCP server 'test' failed during the call of 'die_once'", failed.PayloadJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AToolError_FailsTheCallTerminally_WithTheServersMessage()
    {
        var done = await RunAsync("test_refuse", new { why = "no" });

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Contains("refused: no", done.Error!.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(await fixture.Client.GetJournalAsync(done.RunId), r => r.Kind == "AttemptFailed");
    }

    [Fact]
    public async Task AChangedSchema_IsANewVersion_NewRunsTakeIt_AndARunPinnedToTheOldOneIsNotServedTheNewOne()
    {
        var pinned = await fixture.Client.StartAsync(McpPinWorkflow.Name, 0);
        await fixture.Client.WaitForStatusAsync(pinned.RunId, RunStatus.AwaitingSignal, Patience);

        await File.WriteAllTextAsync(fixture.VariantFile, "2");
        var deadline = DateTime.UtcNow + Patience;
        while (!(await fixture.Client.GetToolsAsync("test_lookup")).Single().Versions.Any(v => v.Version == "2.0.0"))
        {
            Assert.True(DateTime.UtcNow < deadline, "the changed schema was not registered as version 2.0.0");
            await Task.Delay(100);
        }

        var fresh = await RunAsync("test_lookup", new { q = "c", limit = 3 });
        await fixture.Client.SignalAsync(pinned.RunId, "go", "now");
        var old = await fixture.Client.WaitAsync(pinned.RunId, Patience);

        Assert.Equal(RunStatus.Completed, fresh.Status);
        Assert.Contains("c (v2, 3)", fresh.ResultJson, StringComparison.Ordinal);
        var version = (await fixture.Client.GetJournalAsync(fresh.RunId)).Single(r => r.Kind == "Tool").PayloadJson!;
        Assert.Equal("2.0.0", JsonDocument.Parse(version).RootElement.GetProperty("version").GetString());
        Assert.Equal(RunStatus.Failed, old.Status);
        Assert.Equal("unknown_tool", old.Error!.Kind);
        var view = (await fixture.Client.GetToolsAsync("test_lookup")).Single();
        Assert.Equal("2.0.0", view.Newest);
        Assert.Contains("\"limit\"", view.Versions.Single(v => v.Version == "2.0.0").InputSchema, StringComparison.Ordinal);
    }

    private async Task<RunInfo> RunAsync(string tool, object? arguments)
    {
        var run = await fixture.Client.StartAsync("test.tool", new { tool, arguments = JsonSerializer.SerializeToElement(arguments ?? new { }) });
        return await fixture.Client.WaitAsync(run.RunId, Patience);
    }
}
