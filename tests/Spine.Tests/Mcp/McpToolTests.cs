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
                CostPerCall = 0.01m,
            }));

            // Like any tool's: a policy for one role, and a cluster-wide rate limit.
            var rule = new Spine.Policies.PolicyRule { Name = "mcp-readers", Workflow = "test.tool", Role = "mcp-reader" };
            rule.Tools["test_lookup"] = new Spine.Policies.ToolRule { Arguments = """{"properties":{"q":{"maxLength":5}}}""" };
            silo.Services.AddSpinePolicy(rule);
            silo.Services.Configure<Spine.RateLimits.RateLimitOptions>(o =>
            {
                o.MaxInMemoryWait = TimeSpan.FromMilliseconds(50);
                o.Limits.Add(new Spine.RateLimits.RateLimitRule { Tool = "test_die_once", Requests = 2, Burst = 1 });
            });
            silo.Services.AddSpineWorkflow<ToolCallWorkflow, ToolCallInput, JsonElement>();
            silo.Services.AddSpineWorkflow<McpPinWorkflow, int, string>();
            silo.Services.AddKeyedSingleton<Microsoft.Extensions.AI.IChatClient>(McpAgentChatClient.Key, new McpAgentChatClient());
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

/// <summary>A model that calls <c>test_lookup</c> once, then answers with what it got; records the declaration it was shown.</summary>
public sealed class McpAgentChatClient : TestChatClient
{
    public const string Key = "mcp-agent";

    public static System.Collections.Concurrent.ConcurrentQueue<string> Shown { get; } = new();

    public override Task<Microsoft.Extensions.AI.ChatResponse> GetResponseAsync(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, Microsoft.Extensions.AI.ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var history = messages.ToList();
        var declaration = options?.Tools?.OfType<Microsoft.Extensions.AI.AIFunctionDeclaration>().Single();
        Shown.Enqueue($"{declaration?.Name}: {declaration?.Description} {declaration?.JsonSchema.GetRawText()}");
        if (history.LastOrDefault(m => m.Role == Microsoft.Extensions.AI.ChatRole.Tool) is { } answered)
        {
            var result = answered.Contents.OfType<Microsoft.Extensions.AI.FunctionResultContent>().Single().Result;
            return Task.FromResult(new Microsoft.Extensions.AI.ChatResponse(new Microsoft.Extensions.AI.ChatMessage(Microsoft.Extensions.AI.ChatRole.Assistant, $"found {JsonSerializer.Serialize(result)}")));
        }

        return Task.FromResult(new Microsoft.Extensions.AI.ChatResponse(new Microsoft.Extensions.AI.ChatMessage(Microsoft.Extensions.AI.ChatRole.Assistant,
            [new Microsoft.Extensions.AI.FunctionCallContent("c1", "test_lookup", new Dictionary<string, object?> { ["q"] = "agent" })])));
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
    public async Task TheAgentLoop_ShowsTheModelTheServersToolAndSchema_AndCallsIt()
    {
        var run = await fixture.Client.StartAsync("agent", new Spine.Agents.AgentInput("look it up", Tools: ["test_lookup"], ChatClient: McpAgentChatClient.Key));

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Contains("agent (v1)", done.ResultJson, StringComparison.Ordinal);
        Assert.All(McpAgentChatClient.Shown, s => Assert.StartsWith("test_lookup: Looks a term up. {", s, StringComparison.Ordinal));
        Assert.Contains("\"q\"", McpAgentChatClient.Shown.First(), StringComparison.Ordinal);
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
        await NewestBecomesAsync("2.0.0");

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

        // Rolled back: the server offers the first contract again, under its first version; new runs take it.
        await File.WriteAllTextAsync(fixture.VariantFile, "1");
        await NewestBecomesAsync("1.0.0");
        var back = await RunAsync("test_lookup", new { q = "d" });
        Assert.Contains("d (v1)", back.ResultJson, StringComparison.Ordinal);
        var backRow = (await fixture.Client.GetJournalAsync(back.RunId)).Single(r => r.Kind == "Tool").PayloadJson!;
        Assert.Equal("1.0.0", JsonDocument.Parse(backRow).RootElement.GetProperty("version").GetString());
    }

    private async Task NewestBecomesAsync(string version)
    {
        var deadline = DateTime.UtcNow + Patience;
        while ((await fixture.Client.GetToolsAsync("test_lookup")).Single().Newest != version)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the server's contract did not become version {version}");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task AnMcpToolsCall_IsPolicyCheckedBudgetedAndRateLimited_LikeAnyTools()
    {
        // A policy: a reader's arguments over the rule's limit never reach the server.
        var denied = await RunAsync("test_lookup", new { q = "far too long" }, new Spine.Identity.SpineActor("rita", ["mcp-reader"]));
        Assert.Equal("policy_denied", denied.Error!.Kind);
        Assert.Contains(await fixture.Client.GetJournalAsync(denied.RunId), r => r.Kind == "PolicyDenied");

        // A budget: each call costs 0.01, and the account has 0.015.
        var account = "mcp-" + Guid.NewGuid().ToString("N");
        await fixture.Client.SetBudgetAsync(account, new Spine.Budgets.BudgetCeilings { TotalCost = 0.015m });
        var first = await RunAsync("test_lookup", new { q = "one" }, account: account);
        var second = await RunAsync("test_lookup", new { q = "two" }, account: account);
        Assert.Equal(RunStatus.Completed, first.Status);
        Assert.Equal("budget_exhausted", second.Error!.Kind);

        // A rate limit of 2 calls a second: three runs at once wait for their permits, the later ones durably.
        var markers = Enumerable.Range(0, 3).Select(_ => "limited-" + Guid.NewGuid().ToString("N")).ToList();
        foreach (var marker in markers)
        {
            // Died already, as far as the server knows: these calls answer at once.
            await File.WriteAllTextAsync(Path.Combine(fixture.Markers, "spine-mcp-died-" + marker), "died");
        }

        var runs = await Task.WhenAll(markers.Select(marker => RunAsync("test_die_once", new { marker })));
        Assert.All(runs, r => Assert.Equal(RunStatus.Completed, r.Status));
        var waits = 0;
        foreach (var run in runs)
        {
            waits += (await fixture.Client.GetJournalAsync(run.RunId)).Count(r => r.Kind == "RateLimited");
        }

        Assert.True(waits >= 1, "no call waited for a permit");
    }

    private async Task<RunInfo> RunAsync(string tool, object? arguments, Spine.Identity.SpineActor? actor = null, string? account = null)
    {
        var input = JsonSerializer.Serialize(new { tool, arguments = JsonSerializer.SerializeToElement(arguments ?? new { }) }, Policies.SpineJsonForTests.Options);
        var run = await fixture.Client.StartAsync(new StartRunRequest("test.tool", input, AccountId: account, Actor: actor));
        return await fixture.Client.WaitAsync(run.RunId, Patience);
    }
}
