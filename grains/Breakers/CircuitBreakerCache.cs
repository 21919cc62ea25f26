using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Spine.Hosting;
using Spine.Runs;

namespace Spine.Breakers;

/// <summary>What a caller may do with a tool call.</summary>
public enum BreakerPermit
{
    /// <summary>Call; report the outcome with <see cref="CircuitBreakerCache.Record"/>.</summary>
    Allowed,

    /// <summary>Call as the half-open probe; report with <see cref="CircuitBreakerCache.ReportProbeAsync"/>.</summary>
    Probe,

    /// <summary>Do not call: the breaker is open.</summary>
    Rejected,
}

/// <summary>
/// The silo's view of every tool breaker: verdicts are cached for <see cref="BreakerPolicy.CacheFor"/>
/// and outcomes are summed locally and sent to the breaker grains every
/// <see cref="SpineOptions.BreakerReportInterval"/>, so a busy tool costs its breaker grain a few calls a
/// second per silo instead of one per tool call.
/// </summary>
public sealed partial class CircuitBreakerCache : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly IGrainFactory _grains;
    private readonly TimeProvider _time;
    private readonly ILogger<CircuitBreakerCache> _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reporter;

    /// <summary>Starts the batch reporter.</summary>
    public CircuitBreakerCache(IGrainFactory grains, IOptions<SpineOptions> options, TimeProvider time, ILogger<CircuitBreakerCache> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _grains = grains;
        _time = time;
        _logger = logger;
        var interval = options.Value.BreakerReportInterval;
        _reporter = Task.Run(() => ReportLoopAsync(interval));
    }

    /// <summary>Asks whether a call to <paramref name="tool"/> may go ahead; <paramref name="retryAt"/> is when to try again if not.</summary>
    public async Task<(BreakerPermit Permit, DateTimeOffset RetryAt)> AcquireAsync(string tool, BreakerPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        if (!policy.Enabled)
        {
            return (BreakerPermit.Allowed, default);
        }

        var entry = _entries.GetOrAdd(tool, _ => new Entry());
        var now = _time.GetUtcNow();
        var verdict = entry.Verdict;
        if (verdict is null || now - entry.FetchedAt > policy.CacheFor || (verdict.State == BreakerState.Open && now >= verdict.OpenUntil))
        {
            verdict = await Breaker(tool).GetVerdictAsync();
            entry.Update(verdict, now);
        }

        switch (verdict.State)
        {
            case BreakerState.Closed:
                return (BreakerPermit.Allowed, default);
            case BreakerState.Open when verdict.OpenUntil > now:
                return (BreakerPermit.Rejected, verdict.OpenUntil.Value);
            default:
                if (await Breaker(tool).TryAcquireProbeAsync())
                {
                    return (BreakerPermit.Probe, default);
                }

                // Someone else holds the probe, or the breaker closed since this silo's verdict was cached.
                verdict = await Breaker(tool).GetVerdictAsync();
                entry.Update(verdict, _time.GetUtcNow());
                return verdict.State == BreakerState.Closed
                    ? (BreakerPermit.Allowed, default)
                    : (BreakerPermit.Rejected, now + TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerSecond, policy.CoolDown.Ticks / 4)));
        }
    }

    /// <summary>Counts an allowed call's outcome; sent with the next batch.</summary>
    public void Record(string tool, bool success)
    {
        var entry = _entries.GetOrAdd(tool, _ => new Entry());
        if (success)
        {
            Interlocked.Increment(ref entry.PendingSuccesses);
        }
        else
        {
            Interlocked.Increment(ref entry.PendingFailures);
        }
    }

    /// <summary>Reports the probe's outcome at once: it decides the breaker's next state.</summary>
    public async Task ReportProbeAsync(string tool, bool success)
    {
        var verdict = await Breaker(tool).ReportProbeAsync(success);
        _entries.GetOrAdd(tool, _ => new Entry()).Update(verdict, _time.GetUtcNow());
    }

    /// <summary>The verdict as this silo sees it now (refreshed from the grain).</summary>
    public async Task<BreakerVerdict> GetVerdictAsync(string tool)
    {
        var verdict = await Breaker(tool).GetVerdictAsync();
        _entries.GetOrAdd(tool, _ => new Entry()).Update(verdict, _time.GetUtcNow());
        return verdict;
    }

    /// <summary>The cached verdict, without asking the grain (null if this silo has none).</summary>
    public BreakerVerdict? Cached(string tool) => _entries.TryGetValue(tool, out var entry) ? entry.Verdict : null;

    /// <summary>Sends every pending batch now.</summary>
    public async Task FlushAsync()
    {
        foreach (var (tool, entry) in _entries)
        {
            var successes = Interlocked.Exchange(ref entry.PendingSuccesses, 0);
            var failures = Interlocked.Exchange(ref entry.PendingFailures, 0);
            if (successes == 0 && failures == 0)
            {
                continue;
            }

            try
            {
                entry.Update(await Breaker(tool).ReportAsync(successes, failures), _time.GetUtcNow());
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Put the counts back: they go with the next batch.
                Interlocked.Add(ref entry.PendingSuccesses, successes);
                Interlocked.Add(ref entry.PendingFailures, failures);
                LogReportFailed(_logger, e, tool);
            }
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _reporter;
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private ICircuitBreakerGrain Breaker(string tool) => _grains.GetGrain<ICircuitBreakerGrain>(tool);

    private async Task ReportLoopAsync(TimeSpan interval)
    {
        using var timer = new PeriodicTimer(interval, _time);
        while (await timer.WaitForNextTickAsync(_stop.Token))
        {
            await FlushAsync();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reporting outcomes to the circuit breaker of tool {Tool} failed; they are kept for the next batch")]
    private static partial void LogReportFailed(ILogger logger, Exception exception, string tool);

    private sealed class Entry
    {
        public int PendingSuccesses;
        public int PendingFailures;

        public BreakerVerdict? Verdict { get; private set; }

        public DateTimeOffset FetchedAt { get; private set; }

        public void Update(BreakerVerdict verdict, DateTimeOffset at)
        {
            Verdict = verdict;
            FetchedAt = at;
        }
    }
}
