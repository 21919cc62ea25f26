using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Orleans.TestingHost;
using Spine.Client;
using Spine.Hosting;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Telemetry;

/// <summary>
/// The Spine meter's cost, budget, breaker, approval and dead-letter metrics, read with the in-memory exporter from a
/// real silo; and the cost of a model call on its attempt's span, as the budget settled it.
/// </summary>
public sealed class MetricsTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ModelCallsApprovalsAndDeadLetters_AreCountedAndGauged_AndTheCostIsOnTheSpan()
    {
        var spans = new List<Activity>();
        var metrics = new List<MetricSnapshot>();
        using var tracing = Sdk.CreateTracerProviderBuilder().AddSource("Spine").AddInMemoryExporter(spans).Build();
        using var meters = Sdk.CreateMeterProviderBuilder().AddMeter("Spine").AddInMemoryExporter(metrics).Build();
        var postgres = await TestPostgres.GetAsync();
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var (payoutType, chaosType, tool) = ("payout-" + suffix, "chaos-" + suffix, "gauged-tool-" + suffix);
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddSpine(postgres.RuntimeConnectionString, null, o =>
            {
                o.Audit.Key = TestAudit.Key;
                o.GaugePeriod = TimeSpan.FromSeconds(1);
                TestSpine.OnSharedDatabase(o);
            });
            silo.Services.Configure<Spine.Budgets.BudgetOptions>(o =>
                o.Prices["gauged-model"] = new Spine.Budgets.ModelPrice { InputPerMillion = 1000, OutputPerMillion = 2000 });
            silo.Services.AddKeyedSingleton<Microsoft.Extensions.AI.IChatClient>("gauged", new Budgets.MeteredChatClient("gauged-model"));
            silo.Services.AddSpineDemo(new ConfigurationBuilder().Build());

            // Types of this test's own: the index's counts of them are exact, whatever else the shared database holds.
            silo.Services.AddSpineWorkflow<PayoutWorkflow, PayoutInput, PayoutOutput>(payoutType, 1);
            silo.Services.AddSpineWorkflow<ChaosWorkflow, ChaosInput, ChaosOutput>(chaosType, 1);
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        var client = new SpineClient(cluster.Client);
        var account = "metrics-" + Guid.NewGuid().ToString("N")[..8];
        await client.SetBudgetAsync(account, new Spine.Budgets.BudgetCeilings { DailyTokens = 100_000, DailyCost = 50m });

        var agent = await client.StartAsync("agent", new Spine.Agents.AgentInput("hello", ChatClient: "gauged"), accountId: account);
        var answered = await client.WaitAsync(agent.RunId, Patience);
        Assert.True(answered.Status == RunStatus.Completed, $"{answered.Status}: {answered.Error}");
        var payout = await client.StartAsync(payoutType, new PayoutInput(500, ApproverRole: "finance"));
        Assert.Equal(RunStatus.AwaitingApproval, (await client.WaitForStatusAsync(payout.RunId, RunStatus.AwaitingApproval, Patience)).Status);
        var chaos = await client.StartAsync(chaosType, new ChaosInput(Steps: 1, FailureRate: 1.0, RetryDelayMilliseconds: 20, MaxAttempts: 2));
        Assert.Equal(RunStatus.DeadLettered, (await client.WaitAsync(chaos.RunId, Patience)).Status);
        await client.ResetBreakerAsync(tool);

        // Gauges are read at each collection: collect until the index has been read again and the budget republished.
        await Eventually.GetAsync(() =>
        {
            metrics.Clear();
            meters.ForceFlush();
            var seen = metrics.ToList();
            return Task.FromResult(new Seen(seen, Gauge(seen, "spine.approvals.waiting", "spine.workflow.type", payoutType),
                Gauge(seen, "spine.dlq.size", "spine.workflow.type", chaosType), Gauge(seen, "spine.budget.remaining.tokens", "spine.account", account)));
        }, m => m.Waiting == 1 && m.DeadLettered == 1 && m.RemainingTokens == 100_000 - 30, Patience, "the gauges to show the runs and the spend");
        tracing.ForceFlush();

        Assert.Equal(10, Sum(metrics, "spine.model.tokens", ("spine.account", account), ("gen_ai.token.type", "input"), ("gen_ai.request.model", "gauged-model")));
        Assert.Equal(20, Sum(metrics, "spine.model.tokens", ("spine.account", account), ("gen_ai.token.type", "output")));

        // 10 tokens in at 1000 per million and 20 out at 2000: 0.05.
        var cost = Sum(metrics, "spine.cost", ("spine.account", account), ("gen_ai.request.model", "gauged-model"));
        Assert.Equal(0.05, cost, 6);
        Assert.Equal(50.0 - 0.05, Gauge(metrics, "spine.budget.remaining.cost", "spine.account", account), 6);
        Assert.True(Gauge(metrics, "spine.approvals.oldest.age", "spine.workflow.type", payoutType) > 0);
        Assert.Equal(0, Gauge(metrics, "spine.breaker.state", "spine.tool.name", tool));

        var attempt = Assert.Single(spans, s => (string?)s.GetTagItem("spine.run.id") == agent.RunId && (string?)s.GetTagItem("spine.step.kind") == "Model");
        var settled = (await client.GetJournalAsync(agent.RunId)).Single(r => r.Kind == "BudgetSettled");
        var settledCost = JsonDocument.Parse(settled.PayloadJson!).RootElement.GetProperty("cost").GetDouble();
        Assert.Equal(settledCost, Convert.ToDouble(attempt.GetTagItem("spine.cost"), CultureInfo.InvariantCulture), 9);
        Assert.Equal("gauged-model", attempt.GetTagItem("gen_ai.request.model"));
        await cluster.StopAllSilosAsync();
    }

    /// <summary>One collection, and the gauges the test waits for.</summary>
    private sealed record Seen(List<MetricSnapshot> Metrics, double Waiting, double DeadLettered, double RemainingTokens)
    {
        public override string ToString() => $"waiting {Waiting}, dead-lettered {DeadLettered}, remaining tokens {RemainingTokens}";
    }

    private static double Sum(IEnumerable<MetricSnapshot> metrics, string name, params (string Key, string Value)[] tags) =>
        Points(metrics, name, tags).Sum(p => p.MetricType.IsDouble() ? p.Point.GetSumDouble() : p.Point.GetSumLong());

    private static double Gauge(IEnumerable<MetricSnapshot> metrics, string name, string key, string value) =>
        Points(metrics, name, [(key, value)]).Select(p => p.MetricType.IsDouble() ? p.Point.GetGaugeLastValueDouble() : p.Point.GetGaugeLastValueLong())
            .DefaultIfEmpty(double.NaN).Last();

    private static List<(MetricType MetricType, MetricPoint Point)> Points(IEnumerable<MetricSnapshot> metrics, string name, (string Key, string Value)[] tags)
    {
        var found = new List<(MetricType, MetricPoint)>();
        foreach (var metric in metrics.Where(m => m.Name == name))
        {
            foreach (var point in metric.MetricPoints)
            {
                var pointTags = new Dictionary<string, object?>();
                foreach (var tag in point.Tags)
                {
                    pointTags[tag.Key] = tag.Value;
                }

                if (tags.All(t => pointTags.TryGetValue(t.Key, out var v) && (string?)v == t.Value))
                {
                    found.Add((metric.MetricType, point));
                }
            }
        }

        return found;
    }
}
