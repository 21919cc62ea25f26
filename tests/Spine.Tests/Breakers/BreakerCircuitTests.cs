using Microsoft.Extensions.Time.Testing;
using Spine.Breakers;
using Spine.Runs;

namespace Spine.Tests.Breakers;

/// <summary>The breaker's window and state machine on a fake clock: no silo, no waiting.</summary>
public sealed class BreakerCircuitTests
{
    // Midnight, so the 3 s buckets of the 30 s window start exactly at the clock's start.
    private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static readonly BreakerPolicy Policy = new()
    {
        FailureRateThreshold = 0.5,
        MinimumCalls = 4,
        Window = TimeSpan.FromSeconds(30),
        CoolDown = TimeSpan.FromSeconds(15),
    };

    private readonly FakeTimeProvider _time = new(Start);
    private readonly BreakerRecord _record = new();
    private readonly BreakerCircuit _circuit;

    public BreakerCircuitTests() => _circuit = new BreakerCircuit(_record, _time);

    [Fact]
    public void Report_FailureRateReachesThresholdWithinWindow_Opens()
    {
        Assert.False(_circuit.Report(successes: 1, failures: 1, Policy));
        _time.Advance(TimeSpan.FromSeconds(10));

        var opened = _circuit.Report(successes: 0, failures: 2, Policy);

        Assert.True(opened);
        Assert.Equal(BreakerState.Open, _circuit.State);
        Assert.Equal(_time.GetUtcNow() + Policy.CoolDown, _circuit.OpenUntil);
        Assert.Equal(1, _record.TimesOpened);
    }

    [Fact]
    public void Report_EveryCallFailedButFewerThanMinimum_StaysClosed()
    {
        Assert.False(_circuit.Report(successes: 0, failures: Policy.MinimumCalls - 1, Policy));

        Assert.Equal(BreakerState.Closed, _circuit.State);
        Assert.Equal((3, 1.0), _circuit.Rate(Policy));
    }

    [Fact]
    public void Report_RateBelowThreshold_StaysClosed()
    {
        Assert.False(_circuit.Report(successes: 6, failures: 4, Policy));

        Assert.Equal(BreakerState.Closed, _circuit.State);
    }

    [Fact]
    public void Report_FailuresOlderThanWindow_AreNotCounted()
    {
        _circuit.Report(successes: 0, failures: 3, Policy);
        _time.Advance(Policy.Window + TimeSpan.FromSeconds(1));

        var opened = _circuit.Report(successes: 0, failures: 1, Policy);

        Assert.False(opened);
        Assert.Equal(BreakerState.Closed, _circuit.State);
        Assert.Equal((1, 1.0), _circuit.Rate(Policy));
    }

    [Fact]
    public void Report_FailuresEarlierInWindow_AreCounted()
    {
        _circuit.Report(successes: 0, failures: 3, Policy);
        _time.Advance(Policy.Window - TimeSpan.FromSeconds(4));

        Assert.True(_circuit.Report(successes: 0, failures: 1, Policy));
    }

    [Fact]
    public void Report_WhileOpen_IsIgnored()
    {
        Open();
        _time.Advance(Policy.CoolDown);

        Assert.False(_circuit.Report(successes: 100, failures: 0, Policy));
        Assert.Equal(BreakerState.HalfOpen, _circuit.State);
        Assert.Equal(0, _circuit.Rate(Policy).Calls);
    }

    [Fact]
    public void Open_BeforeCoolDownEnds_HandsOutNoProbe()
    {
        Open();
        _time.Advance(Policy.CoolDown - TimeSpan.FromMilliseconds(1));

        Assert.Equal(BreakerState.Open, _circuit.State);
        Assert.False(_circuit.TryAcquireProbe(Policy));
    }

    [Fact]
    public void Open_AfterCoolDown_IsHalfOpenWithOneProbe()
    {
        Open();
        _time.Advance(Policy.CoolDown);

        Assert.Equal(BreakerState.HalfOpen, _circuit.State);
        Assert.True(_circuit.TryAcquireProbe(Policy));
        Assert.False(_circuit.TryAcquireProbe(Policy));
    }

    [Fact]
    public void Probe_LostWithoutOutcome_LeaseLapsesAfterACoolDown()
    {
        Open();
        _time.Advance(Policy.CoolDown);
        Assert.True(_circuit.TryAcquireProbe(Policy));

        _time.Advance(Policy.CoolDown - TimeSpan.FromMilliseconds(1));
        Assert.False(_circuit.TryAcquireProbe(Policy));
        _time.Advance(TimeSpan.FromMilliseconds(1));

        Assert.True(_circuit.TryAcquireProbe(Policy));
    }

    [Fact]
    public void ReportProbe_Success_Closes()
    {
        HoldProbe();

        var changed = _circuit.ReportProbe(success: true, Policy);

        Assert.True(changed);
        Assert.Equal(BreakerState.Closed, _circuit.State);
        Assert.Null(_circuit.OpenUntil);
        Assert.Equal(0, _circuit.Rate(Policy).Calls);
        Assert.False(_circuit.Report(successes: 0, failures: Policy.MinimumCalls - 1, Policy));
    }

    [Fact]
    public void ReportProbe_Failure_ReopensForAnotherCoolDown()
    {
        HoldProbe();

        var changed = _circuit.ReportProbe(success: false, Policy);

        Assert.True(changed);
        Assert.Equal(BreakerState.Open, _circuit.State);
        Assert.Equal(_time.GetUtcNow() + Policy.CoolDown, _circuit.OpenUntil);
        Assert.Equal(2, _record.TimesOpened);
        Assert.False(_circuit.TryAcquireProbe(Policy));
    }

    [Fact]
    public void ReportProbe_NotHalfOpen_ChangesNothing()
    {
        Assert.False(_circuit.ReportProbe(success: false, Policy));
        Open();

        Assert.False(_circuit.ReportProbe(success: true, Policy));
        Assert.Equal(BreakerState.Open, _circuit.State);
    }

    [Fact]
    public void Reset_Open_ClosesAndForgetsTheWindow()
    {
        _circuit.Report(successes: 0, failures: 2, Policy);
        Assert.False(_circuit.Reset());
        Assert.Equal(0, _circuit.Rate(Policy).Calls);
        Open();

        Assert.True(_circuit.Reset());
        Assert.Equal(BreakerState.Closed, _circuit.State);
    }

    private void HoldProbe()
    {
        Open();
        _time.Advance(Policy.CoolDown);
        Assert.True(_circuit.TryAcquireProbe(Policy));
    }

    private void Open() => Assert.True(_circuit.Report(successes: 0, failures: Policy.MinimumCalls, Policy));
}
