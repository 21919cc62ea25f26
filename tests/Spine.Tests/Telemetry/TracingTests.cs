using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Orleans.TestingHost;
using Spine.Client;
using Spine.Hosting;
using Spine.Runs;
using Spine.Tests.Infrastructure;
using Spine.Workflows;

namespace Spine.Tests.Telemetry;

/// <summary>Steps that each take a while, so a silo can be killed between them.</summary>
[Workflow("test.slow-steps")]
public sealed class SlowStepsWorkflow : IWorkflow<int, int>
{
    public async Task<int> RunAsync(IWorkflowContext context, int steps)
    {
        for (var i = 1; i <= steps; i++)
        {
            var n = i;
            await context.RunAsync($"slow-{n}", async s =>
            {
                await Task.Delay(300, s.CancellationToken);
                return n;
            });
        }

        return steps;
    }
}

/// <summary>The Spine ActivitySource and Meter, read with OpenTelemetry's in-memory exporters, on two silos of which one is killed.</summary>
public sealed class TracingTests
{
    [Fact]
    public async Task ARunKilledMidwayAndResumedOnAnotherSilo_IsOneTrace_WithASpanForEveryStepAttempt()
    {
        var spans = new List<Activity>();
        var metrics = new List<Metric>();
        using var tracing = Sdk.CreateTracerProviderBuilder().AddSource("Spine").AddInMemoryExporter(spans).Build();
        using var meters = Sdk.CreateMeterProviderBuilder().AddMeter("Spine").AddInMemoryExporter(metrics).Build();
        var postgres = await TestPostgres.GetAsync();
        var builder = new InProcessTestClusterBuilder(2);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddSpine(postgres.RuntimeConnectionString, null, o =>
            {
                o.ResumeReminderPeriod = TimeSpan.FromSeconds(1);
                o.Audit.Key = TestAudit.Key;
                TestSpine.OnSharedDatabase(o);
            });
            silo.Services.AddSpineWorkflow<SlowStepsWorkflow, int, int>();
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        var client = new SpineClient(cluster.Client);
        const int steps = 8;

        var run = await client.StartAsync("test.slow-steps", steps);
        await Eventually.GetAsync(() => client.GetAsync(run.RunId), i => i.StepsRecorded >= 2, TimeSpan.FromSeconds(30), "two steps to be recorded");
        var address = await cluster.Client.GetGrain<IManagementGrain>(0).GetActivationAddress(cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));
        var host = cluster.Silos.Single(s => s.SiloAddress.Equals(address));
        await cluster.KillSiloAsync(host);
        var done = await Eventually.GetAsync(() => client.WaitAsync(run.RunId, TimeSpan.FromSeconds(5)), i => i.Status.IsTerminal(), TimeSpan.FromSeconds(90), "the run to finish on the other silo");
        meters.ForceFlush();
        tracing.Dispose();

        Assert.Equal(RunStatus.Completed, done.Status);
        var mine = spans.Where(s => (string?)s.GetTagItem("spine.run.id") == run.RunId && s.GetTagItem("spine.step") is not null).ToList();
        Assert.Contains(spans, s => s.DisplayName == "run test.slow-steps" && s.TraceId == mine[0].TraceId);

        // One trace, stored with the run: the spans after the kill are in the trace of those before it.
        Assert.Single(mine.Select(s => s.TraceId).Distinct());
        Assert.Equal(2, mine.Select(s => s.GetTagItem("spine.silo")).Distinct().Count());
        var bySteps = mine.GroupBy(s => (int)s.GetTagItem("spine.step")!).ToDictionary(g => g.Key, g => g.ToList());
        Assert.Equal(Enumerable.Range(1, steps), bySteps.Keys.Order());

        // Once per attempt; the step the kill interrupted may also show the attempt the dead silo finished, too late to count.
        Assert.All(bySteps.Values, s => Assert.InRange(s.Count, 1, 2));
        Assert.True(bySteps.Values.Count(s => s.Count == 2) <= 1);
        Assert.All(mine, s => Assert.Equal("test.slow-steps", s.GetTagItem("spine.workflow.type")));
        Assert.All(mine, s => Assert.Equal("Step", s.GetTagItem("spine.step.kind")));
        Assert.Contains(mine, s => (string?)s.GetTagItem("spine.outcome") == "ok");

        var started = metrics.Where(m => m.Name == "spine.runs.started").SelectMany(m => Points(m, "test.slow-steps")).Sum();
        var ended = metrics.Where(m => m.Name == "spine.runs.ended").SelectMany(m => Points(m, "test.slow-steps")).Sum();
        Assert.True(started >= 1, "no run counted as started");
        Assert.True(ended >= 1, "no run counted as ended");
        Assert.Contains(metrics, m => m.Name == "spine.step.attempt.duration");
    }

    [Fact]
    public async Task AModelCall_IsAGenAiSpanUnderItsAttempt_WithTheModelAndTokens()
    {
        var spans = new List<Activity>();
        using var tracing = Sdk.CreateTracerProviderBuilder().AddSource("Spine").AddInMemoryExporter(spans).Build();
        var postgres = await TestPostgres.GetAsync();
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddSpine(postgres.RuntimeConnectionString, null, o =>
            {
                o.Audit.Key = TestAudit.Key;
                TestSpine.OnSharedDatabase(o);
            });
            silo.Services.AddKeyedSingleton<Microsoft.Extensions.AI.IChatClient>("traced", new Budgets.MeteredChatClient("traced-model"));
            silo.Services.AddSpineWorkflow<StepsWorkflow, StepsInput, int>();
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        var client = new SpineClient(cluster.Client);

        var run = await client.StartAsync("agent", new Spine.Agents.AgentInput("hello", ChatClient: "traced"));
        var done = await client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));
        var sleeper = await client.StartAsync("test.steps", new StepsInput(2, SleepMilliseconds: 300));
        var slept = await client.WaitAsync(sleeper.RunId, TimeSpan.FromSeconds(30));

        tracing.Dispose();
        Assert.Equal(RunStatus.Completed, done.Status);
        var all = spans.ToList();

        var attempt = Assert.Single(all, s => (string?)s.GetTagItem("spine.run.id") == run.RunId && (string?)s.GetTagItem("spine.step.kind") == "Model");
        var chat = Assert.Single(all, s => s.ParentSpanId == attempt.SpanId);
        Assert.Equal(attempt.TraceId, chat.TraceId);
        Assert.Equal("chat", chat.GetTagItem("gen_ai.operation.name"));
        Assert.Equal("traced-model", chat.GetTagItem("gen_ai.response.model"));
        Assert.Equal(10, Convert.ToInt32(chat.GetTagItem("gen_ai.usage.input_tokens"), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(20, Convert.ToInt32(chat.GetTagItem("gen_ai.usage.output_tokens"), System.Globalization.CultureInfo.InvariantCulture));

        // A durable sleep is a span of its run's trace too, as long as the sleep.
        Assert.Equal(RunStatus.Completed, slept.Status);
        var sleep = Assert.Single(all, s => (string?)s.GetTagItem("spine.run.id") == sleeper.RunId && s.DisplayName == "wait Sleep");
        Assert.Equal(all.First(s => (string?)s.GetTagItem("spine.run.id") == sleeper.RunId && s.GetTagItem("spine.step") is not null).TraceId, sleep.TraceId);
        Assert.True(sleep.Duration >= TimeSpan.FromMilliseconds(250), $"the sleep's span lasted {sleep.Duration}");
        await cluster.StopAllSilosAsync();
    }

    private static List<long> Points(Metric metric, string workflowType)
    {
        var sums = new List<long>();
        foreach (ref readonly var point in metric.GetMetricPoints())
        {
            foreach (var tag in point.Tags)
            {
                if (tag.Key == "spine.workflow.type" && (string?)tag.Value == workflowType)
                {
                    sums.Add(point.GetSumLong());
                }
            }
        }

        return sums;
    }
}
