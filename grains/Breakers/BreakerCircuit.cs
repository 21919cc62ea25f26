using Spine.Runs;

namespace Spine.Breakers;

/// <summary>
/// A breaker's decisions without the grain around it: the failure rate over a sliding window of buckets, when
/// it opens, when the cool-down ends and the probe goes through, and what the probe's outcome does. It changes
/// <see cref="BreakerRecord"/> in place; a method that returns true changed it and the caller persists it.
/// </summary>
internal sealed class BreakerCircuit(BreakerRecord record, TimeProvider time)
{
    private const int Buckets = 10;
    private readonly (long Slot, int Successes, int Failures)[] _window = new (long, int, int)[Buckets];
    private DateTimeOffset _probeLeaseUntil;

    /// <summary>The state as callers see it now: an open breaker whose cool-down ended is half-open.</summary>
    public BreakerState State => Effective(time.GetUtcNow());

    /// <summary>When an open breaker's cool-down ends.</summary>
    public DateTimeOffset? OpenUntil => record.OpenUntil;

    /// <summary>Counts a batch of outcomes; true when they opened the breaker.</summary>
    public bool Report(int successes, int failures, BreakerPolicy policy)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(successes);
        ArgumentOutOfRangeException.ThrowIfNegative(failures);
        if (record.State != BreakerState.Closed)
        {
            // Outcomes of calls that started before the breaker opened say nothing about the probe.
            return false;
        }

        var slot = Slot(policy);
        ref var bucket = ref _window[slot % Buckets];
        if (bucket.Slot != slot)
        {
            bucket = (slot, 0, 0);
        }

        bucket.Successes += successes;
        bucket.Failures += failures;
        var (calls, rate) = Rate(policy);
        if (calls < policy.MinimumCalls || rate < policy.FailureRateThreshold)
        {
            return false;
        }

        Open(policy);
        return true;
    }

    /// <summary>Hands out the half-open probe: true for the one caller that may call the tool.</summary>
    public bool TryAcquireProbe(BreakerPolicy policy)
    {
        var now = time.GetUtcNow();
        if (Effective(now) != BreakerState.HalfOpen || now < _probeLeaseUntil)
        {
            return false;
        }

        // The lease lapses after a cool-down, so a probe lost with its silo does not hold the breaker forever.
        _probeLeaseUntil = now + policy.CoolDown;
        return true;
    }

    /// <summary>The probe's outcome: a success closes the breaker, a failure opens it for another cool-down. True when the record changed.</summary>
    public bool ReportProbe(bool success, BreakerPolicy policy)
    {
        if (Effective(time.GetUtcNow()) != BreakerState.HalfOpen)
        {
            // A late probe outcome (the breaker was reset, or the lease lapsed and another probe decided) changes nothing.
            return false;
        }

        _probeLeaseUntil = default;
        if (success)
        {
            return Close();
        }

        Open(policy);
        return true;
    }

    /// <summary>Closes the breaker whatever its state; true when the record changed.</summary>
    public bool Reset()
    {
        _probeLeaseUntil = default;
        return Close();
    }

    /// <summary>The calls counted in the window and their failure rate.</summary>
    public (int Calls, double Rate) Rate(BreakerPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var current = Slot(policy);
        int successes = 0, failures = 0;
        foreach (var bucket in _window)
        {
            if (current - bucket.Slot < Buckets)
            {
                successes += bucket.Successes;
                failures += bucket.Failures;
            }
        }

        var calls = successes + failures;
        return (calls, calls == 0 ? 0 : (double)failures / calls);
    }

    private void Open(BreakerPolicy policy)
    {
        record.State = BreakerState.Open;
        record.OpenUntil = time.GetUtcNow() + policy.CoolDown;
        record.TimesOpened++;
        Array.Clear(_window);
    }

    private bool Close()
    {
        Array.Clear(_window);
        if (record.State == BreakerState.Closed)
        {
            return false;
        }

        record.State = BreakerState.Closed;
        record.OpenUntil = null;
        return true;
    }

    private BreakerState Effective(DateTimeOffset now) =>
        record.State == BreakerState.Open && now >= record.OpenUntil ? BreakerState.HalfOpen : record.State;

    private long Slot(BreakerPolicy policy) => time.GetUtcNow().UtcTicks / Math.Max(1, policy.Window.Ticks / Buckets);
}
