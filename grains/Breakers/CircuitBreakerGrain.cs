using Microsoft.Extensions.Options;
using Spine.Hosting;
using Spine.Runs;
using Spine.Tools;

namespace Spine.Breakers;

/// <summary>The durable part of a breaker: only transitions are written, never individual outcomes.</summary>
[GenerateSerializer, Alias("spine.BreakerRecord")]
public sealed class BreakerRecord
{
    /// <summary>The state.</summary>
    [Id(0)] public BreakerState State { get; set; }

    /// <summary>When an open breaker's cool-down ends.</summary>
    [Id(1)] public DateTimeOffset? OpenUntil { get; set; }

    /// <summary>How often the breaker has opened.</summary>
    [Id(2)] public int TimesOpened { get; set; }
}

/// <summary>
/// One tool's circuit breaker for the whole cluster. Silos report outcomes in batches
/// (<see cref="CircuitBreakerCache"/>); the failure rate over a sliding window of buckets decides when
/// it opens. After the cool-down it is half-open: one probe call decides whether it closes again.
/// </summary>
public sealed class CircuitBreakerGrain(
    [PersistentState("breaker", "spine")] IPersistentState<BreakerRecord> record,
    ToolRegistry tools,
    IOptions<SpineOptions> options,
    TimeProvider time) : Grain, ICircuitBreakerGrain
{
    private const int Buckets = 10;
    private readonly (long Slot, int Successes, int Failures)[] _window = new (long, int, int)[Buckets];
    private DateTimeOffset _probeLeaseUntil;

    private string Tool => this.GetPrimaryKeyString();

    private BreakerPolicy Policy => tools.TryResolve(Tool)?.Definition.Breaker ?? options.Value.Breaker;

    /// <inheritdoc />
    public async Task<BreakerVerdict> ReportAsync(int successes, int failures)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(successes);
        ArgumentOutOfRangeException.ThrowIfNegative(failures);
        if (record.State.State != BreakerState.Closed)
        {
            // Outcomes of calls that started before the breaker opened say nothing about the probe.
            return Verdict();
        }

        var policy = Policy;
        var slot = Slot(policy);
        ref var bucket = ref _window[slot % Buckets];
        if (bucket.Slot != slot)
        {
            bucket = (slot, 0, 0);
        }

        bucket.Successes += successes;
        bucket.Failures += failures;
        var (calls, rate) = Rate(policy);
        if (calls >= policy.MinimumCalls && rate >= policy.FailureRateThreshold)
        {
            await OpenAsync(policy);
        }

        return Verdict();
    }

    /// <inheritdoc />
    public Task<BreakerVerdict> GetVerdictAsync() => Task.FromResult(Verdict());

    /// <inheritdoc />
    public Task<bool> TryAcquireProbeAsync()
    {
        var now = time.GetUtcNow();
        if (Effective(now) != BreakerState.HalfOpen || now < _probeLeaseUntil)
        {
            return Task.FromResult(false);
        }

        // The lease lapses after a cool-down, so a probe lost with its silo does not hold the breaker forever.
        _probeLeaseUntil = now + Policy.CoolDown;
        return Task.FromResult(true);
    }

    /// <inheritdoc />
    public async Task<BreakerVerdict> ReportProbeAsync(bool success)
    {
        if (Effective(time.GetUtcNow()) != BreakerState.HalfOpen)
        {
            // A late probe outcome (the breaker was reset, or the lease lapsed and another probe decided) changes nothing.
            return Verdict();
        }

        _probeLeaseUntil = default;
        if (success)
        {
            await CloseAsync();
        }
        else
        {
            await OpenAsync(Policy);
        }

        return Verdict();
    }

    /// <inheritdoc />
    public async Task<BreakerVerdict> ResetAsync()
    {
        _probeLeaseUntil = default;
        await CloseAsync();
        return Verdict();
    }

    private async Task OpenAsync(BreakerPolicy policy)
    {
        record.State.State = BreakerState.Open;
        record.State.OpenUntil = time.GetUtcNow() + policy.CoolDown;
        record.State.TimesOpened++;
        Array.Clear(_window);
        await record.WriteStateAsync();
    }

    private async Task CloseAsync()
    {
        Array.Clear(_window);
        if (record.State.State == BreakerState.Closed)
        {
            return;
        }

        record.State.State = BreakerState.Closed;
        record.State.OpenUntil = null;
        await record.WriteStateAsync();
    }

    private BreakerState Effective(DateTimeOffset now) =>
        record.State.State == BreakerState.Open && now >= record.State.OpenUntil ? BreakerState.HalfOpen : record.State.State;

    private BreakerVerdict Verdict()
    {
        var (calls, rate) = Rate(Policy);
        return new BreakerVerdict(Tool, Effective(time.GetUtcNow()), record.State.OpenUntil, rate, calls);
    }

    private long Slot(BreakerPolicy policy) => time.GetUtcNow().UtcTicks / Math.Max(1, policy.Window.Ticks / Buckets);

    private (int Calls, double Rate) Rate(BreakerPolicy policy)
    {
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
}
