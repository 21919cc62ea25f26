using Microsoft.Extensions.DependencyInjection;
using Spine.Breakers;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Recovery;

/// <summary>
/// The breaker end to end on a two-silo cluster, one test per behaviour. Its window, cool-down and probe rules
/// are tested on a fake clock in <see cref="Breakers.BreakerCircuitTests"/>; a probe that fails and reopens the
/// breaker is exercised here by <see cref="OpenBreaker_ToolDownForTenCoolDowns_RunsWaitWithABoundedNumberOfRows"/>.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class CircuitBreakerTests(ClusterFixture fixture)
{
    private CircuitBreakerCache CacheOf(int silo) => fixture.Cluster.Silos[silo].ServiceProvider.GetRequiredService<CircuitBreakerCache>();

    [Fact]
    public async Task Breaker_FailuresOnOneSilo_BothSilosSeeOpenThenHalfOpenThenClosed()
    {
        var tool = "test_breaker_a";
        var policy = BreakerTool.Policy;
        var a = CacheOf(0);
        var b = CacheOf(1);
        Assert.Equal(2, fixture.Cluster.Silos.Count);
        Assert.Equal(BreakerPermit.Allowed, (await b.AcquireAsync(tool, policy)).Permit);

        for (var i = 0; i < 5; i++)
        {
            a.Record(tool, success: false);
        }

        await a.FlushAsync();
        await Task.Delay(policy.CacheFor * 2);

        Assert.Equal(BreakerState.Open, (await a.GetVerdictAsync(tool)).State);
        Assert.Equal(BreakerState.Open, (await b.GetVerdictAsync(tool)).State);
        var (permit, retryAt) = await b.AcquireAsync(tool, policy);
        Assert.Equal(BreakerPermit.Rejected, permit);
        Assert.True(retryAt > DateTimeOffset.UtcNow);

        await Task.Delay(policy.CoolDown + TimeSpan.FromMilliseconds(200));
        Assert.Equal(BreakerState.HalfOpen, (await a.GetVerdictAsync(tool)).State);
        Assert.Equal(BreakerPermit.Probe, (await b.AcquireAsync(tool, policy)).Permit);
        Assert.Equal(BreakerPermit.Rejected, (await a.AcquireAsync(tool, policy)).Permit);

        await b.ReportProbeAsync(tool, success: true);
        await Task.Delay(policy.CacheFor * 2);

        Assert.Equal(BreakerPermit.Allowed, (await a.AcquireAsync(tool, policy)).Permit);
        Assert.Equal(BreakerState.Closed, (await fixture.Client.GetBreakerAsync(tool)).State);
    }

    [Fact]
    public async Task Run_ToolBreakerOpens_FailsFastWithoutCallingToolThenRecovers()
    {
        await fixture.Client.ResetBreakerAsync("test_breaker");
        BreakerTool.Healthy = false;
        try
        {
            var run = await fixture.Client.StartAsync("test.tool", new { tool = "test_breaker", arguments = new { } });
            await Eventually.GetAsync(() => fixture.Client.GetBreakerAsync("test_breaker"), v => v.State == BreakerState.Open, TimeSpan.FromSeconds(30), "the breaker to open");
            var invocationsWhenOpen = BreakerTool.Invocations;
            await Task.Delay(TimeSpan.FromSeconds(1));

            Assert.Equal(invocationsWhenOpen, BreakerTool.Invocations);
            var journal = await fixture.Client.GetJournalAsync(run.RunId);
            Assert.Contains(journal, r => r.Kind == "AttemptFailed" && r.PayloadJson!.Contains("\"class\":\"circuit_open\"", StringComparison.Ordinal));

            BreakerTool.Healthy = true;
            var done = await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));

            Assert.Equal(RunStatus.Completed, done.Status);
            Assert.Equal(BreakerState.Closed, (await fixture.Client.GetBreakerAsync("test_breaker")).State);
        }
        finally
        {
            BreakerTool.Healthy = true;
        }
    }

    [Fact]
    public async Task OpenBreaker_ToolDownForTenCoolDowns_RunsWaitWithABoundedNumberOfRows()
    {
        const int runs = 20;
        DownTool.Down = true;
        var started = await Task.WhenAll(Enumerable.Range(0, runs).Select(_ =>
            fixture.Client.StartAsync("test.tool", new ToolCallInput("test_down", System.Text.Json.JsonSerializer.SerializeToElement(new { })))));
        var ids = started.Select(r => r.RunId).ToArray();
        var calls = DownTool.Invocations;

        // Ten cool-downs of 300 ms with every run waiting on the open breaker.
        await Task.Delay(TimeSpan.FromSeconds(3.5));
        DownTool.Down = false;
        var callsWhileDown = DownTool.Invocations - calls;
        var done = await Task.WhenAll(ids.Select(id => fixture.Client.WaitAsync(id, TimeSpan.FromSeconds(30))));

        Assert.All(done, d => Assert.Equal(RunStatus.Completed, d.Status));
        var circuitRows = await fixture.Postgres.ScalarAsync<long>(
            "SELECT count(*) FROM spine_journal WHERE run_id = ANY(@ids) AND kind = 7 AND payload LIKE '%\"circuit_open\"%'", ("ids", ids));

        // A run writes one row when it first meets the open breaker, not one per cool-down.
        Assert.True(circuitRows <= runs, $"{circuitRows} circuit-open rows for {runs} runs");
        Assert.True(callsWhileDown < runs * 3, $"the tool was called {callsWhileDown} times while down");
    }

    [Fact]
    public async Task OpenBreaker_LongerThanMaxCircuitWait_StepIsExhaustedAndTheRunDeadLettered()
    {
        DownTool.Down = true;
        try
        {
            var run = await fixture.Client.StartAsync("test.tool", new ToolCallInput("test_down_briefly_waited", System.Text.Json.JsonSerializer.SerializeToElement(new { })));
            var done = await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));

            Assert.Equal(RunStatus.DeadLettered, done.Status);
            Assert.Equal("circuit_open", done.Error!.Kind);
            Assert.Contains("MaxCircuitWait", done.Error.Message, StringComparison.Ordinal);
        }
        finally
        {
            DownTool.Down = false;
        }
    }
}
