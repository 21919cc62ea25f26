using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using Spine.Alerts;
using Spine.Client;
using Spine.Errors;
using Spine.Hosting;
using Spine.Local.Network;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Tests.Infrastructure;
using Spine.Workflows;

namespace Spine.Tests.Alerts;

/// <summary>What <see cref="AlertProbeWorkflow"/> does: steps, model calls (0.05 each), tool calls, and whether it fails at the end.</summary>
public sealed record AlertProbeInput(int Steps = 3, int ModelCalls = 1, string[]? Tools = null, bool Fail = false);

/// <summary>A workload whose shape each run chooses, to inject regressions into.</summary>
public sealed class AlertProbeWorkflow : IWorkflow<AlertProbeInput, int>
{
    public async Task<int> RunAsync(IWorkflowContext context, AlertProbeInput input)
    {
        for (var i = 0; i < input.Steps; i++)
        {
            var n = i;
            await context.RunAsync($"step-{n}", _ => Task.FromResult(n));
        }

        for (var i = 0; i < input.ModelCalls; i++)
        {
            await context.CallModelAsync([new ChatMessage(ChatRole.User, "hello")], clientKey: AlertTests.ChatClient);
        }

        foreach (var tool in input.Tools ?? ["calculator"])
        {
            var arguments = tool == "calculator" ? """{"expression":"1+1"}""" : """{"text":"one two"}""";
            await context.CallToolAsync(tool, JsonDocument.Parse(arguments).RootElement);
        }

        if (input.Fail)
        {
            await context.RunAsync<int>("fail", _ => throw new TerminalException("injected failure"));
        }

        return input.Steps;
    }
}

/// <summary>
/// Anomaly alerts on a real silo: a steady workload raises none; each injected regression (failure rate, cost per run,
/// a tool never used before, a runaway step count) raises its alert once, stored, counted and posted to the webhook,
/// signed and retried after the receiver's first refusal.
/// </summary>
public sealed class AlertTests
{
    public const string ChatClient = "alert-metered";
    private const string Secret = "alert-webhook-secret";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task SteadyWorkloadRaisesNone_EachInjectedRegressionRaisesItsAlertOnce_AndTheWebhookGetsEachSigned()
    {
        using var receiver = new WebhookReceiver();
        var type = "test.alert-probe-" + Guid.NewGuid().ToString("N")[..8];
        var postgres = await TestPostgres.GetAsync();
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddSpine(postgres.RuntimeConnectionString, null, o =>
            {
                o.Audit.Key = TestAudit.Key;
                TestSpine.OnSharedDatabase(o);
            });
            silo.Services.Configure<AlertOptions>(o =>
            {
                // Evaluations are the test's to make; the ticker's first one sets where judging starts.
                o.EvaluationPeriod = TimeSpan.FromHours(1);
                o.SettleLag = TimeSpan.FromMilliseconds(200);
                o.BaselineRuns = 10;
                o.MinRuns = 5;
                o.WebhookUrl = receiver.Url;
                o.WebhookSecret = Secret;
            });
            silo.Services.Configure<Spine.Budgets.BudgetOptions>(o =>
                o.Prices["alert-model"] = new Spine.Budgets.ModelPrice { InputPerMillion = 1000, OutputPerMillion = 2000 });
            silo.Services.AddKeyedSingleton<IChatClient>(ChatClient, new Budgets.MeteredChatClient("alert-model"));
            silo.Services.AddSpineDemo(new ConfigurationBuilder().Build());
            silo.Services.AddSpineWorkflow<AlertProbeWorkflow, AlertProbeInput, int>(type, 1);
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        var client = new SpineClient(cluster.Client);
        var detector = cluster.Client.GetGrain<IAlertGrain>(0);

        // Cost per run is what budgets settle: the runs are an account's, with ceilings far above what they spend.
        var account = "alerts-" + Guid.NewGuid().ToString("N")[..8];
        await client.SetBudgetAsync(account, new Spine.Budgets.BudgetCeilings { DailyTokens = 100_000_000, DailyCost = 100_000m });
        await EvaluateAsync(detector);

        async Task<IReadOnlyList<AlertView>> Batch(int runs, Func<int, AlertProbeInput> input)
        {
            var started = await Task.WhenAll(Enumerable.Range(0, runs).Select(i => client.StartAsync(type, input(i), accountId: account)));
            foreach (var run in started)
            {
                Assert.True((await client.WaitAsync(run.RunId, Patience)).Status.IsTerminal());
            }

            return await EvaluateAsync(detector);
        }

        // A steady workload, one failure in twelve, then six more with one failure: the baseline, and nothing raised.
        Assert.Empty(await Batch(12, i => new AlertProbeInput(Fail: i == 5)));
        Assert.Empty(await Batch(6, i => new AlertProbeInput(Fail: i == 2)));

        // Every run fails: failure_rate, once; the next failing batch raises nothing new while it stands.
        var failing = await Batch(6, _ => new AlertProbeInput(Fail: true));
        Assert.Equal(["failure_rate"], failing.Select(a => a.Rule));
        Assert.Empty(await Batch(6, _ => new AlertProbeInput(Fail: true)));

        // Six model calls a run instead of one: cost_spike, once (and the failure rate is back to normal).
        var costly = await Batch(5, _ => new AlertProbeInput(ModelCalls: 6));
        Assert.Equal(["cost_spike"], costly.Select(a => a.Rule));

        // A tool no run of the type called before: new_tool, once; calling it again raises nothing.
        var novel = await Batch(1, _ => new AlertProbeInput(Tools: ["calculator", "text_stats"]));
        Assert.Equal(["new_tool"], novel.Select(a => a.Rule));
        Assert.Equal("text_stats", novel[0].Subject);
        Assert.Empty(await Batch(1, _ => new AlertProbeInput(Tools: ["calculator", "text_stats"])));

        // Forty steps where runs take five: runaway_steps, once.
        var runaway = await Batch(1, _ => new AlertProbeInput(Steps: 40));
        Assert.Equal(["runaway_steps"], runaway.Select(a => a.Rule));

        // Stored, listed through the client, and each posted once it was taken (the receiver refuses every first try).
        var stored = await Eventually.GetAsync(() => client.ListAlertsAsync(new AlertQuery { WorkflowType = type }),
            a => a.All(x => x.DeliveredAt is not null), Patience, "the webhook to take every alert");
        Assert.Equal(["runaway_steps", "new_tool", "cost_spike", "failure_rate"], stored.Select(a => a.Rule));
        Assert.All(stored, a => Assert.Equal(2, a.DeliveryAttempts));
        var delivered = receiver.Accepted.Where(p => p.Alert.GetProperty("workflowType").GetString() == type).ToList();
        Assert.Equal(stored.Select(a => a.AlertId).Order(), delivered.Select(p => p.Alert.GetProperty("alertId").GetInt64()).Order());
        Assert.All(receiver.Received, p => Assert.True(p.SignatureValid, "a post's signature does not verify"));
        await cluster.StopAllSilosAsync();
    }

    private static async Task<IReadOnlyList<AlertView>> EvaluateAsync(IAlertGrain detector)
    {
        // Past the settle lag, so that every run that ended is judged.
        await Task.Delay(400);
        return await detector.EvaluateAsync();
    }

    /// <summary>A webhook receiver on loopback that refuses the first post of each alert with a 503 and takes the second.</summary>
    private sealed class WebhookReceiver : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly ConcurrentDictionary<string, int> _tries = new();

        public WebhookReceiver()
        {
            var port = LoopbackPorts.FreePort();
            Url = new Uri($"http://127.0.0.1:{port}/alerts/");
            _listener.Prefixes.Add(Url.ToString());
            _listener.Start();
            _ = Task.Run(ServeAsync);
        }

        public Uri Url { get; }

        public ConcurrentQueue<(JsonElement Alert, bool SignatureValid)> Received { get; } = new();

        public ConcurrentQueue<(JsonElement Alert, bool SignatureValid)> Accepted { get; } = new();

        private async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }

                using var reader = new StreamReader(context.Request.InputStream, Encoding.UTF8);
                var body = await reader.ReadToEndAsync();
                var timestamp = context.Request.Headers["X-Spine-Timestamp"] ?? "";
                var expected = "sha256=" + Convert.ToHexStringLower(System.Security.Cryptography.HMACSHA256.HashData(
                    Encoding.UTF8.GetBytes(Secret), Encoding.UTF8.GetBytes(timestamp + "." + body)));
                var post = (JsonDocument.Parse(body).RootElement.Clone(), context.Request.Headers["X-Spine-Signature"] == expected);
                Received.Enqueue(post);
                var tries = _tries.AddOrUpdate(context.Request.Headers["X-Spine-Alert-Id"] ?? "", 1, (_, n) => n + 1);
                if (tries > 1)
                {
                    Accepted.Enqueue(post);
                }

                context.Response.StatusCode = tries > 1 ? 200 : 503;
                context.Response.Close();
            }
        }

        public void Dispose()
        {
            _listener.Stop();
            _listener.Close();
        }
    }
}
