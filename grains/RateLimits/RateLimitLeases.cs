using System.Collections.Concurrent;

namespace Spine.RateLimits;

/// <summary>The silo's limiter of every limit key (a per-account limit has one per account).</summary>
internal sealed class RateLimitLeases(IGrainFactory grains, RateLimitRegistry registry, TimeProvider time)
{
    private const int SweepAbove = 1024;

    private static readonly TimeSpan IdleFor = TimeSpan.FromMinutes(5);

    private readonly ConcurrentDictionary<string, LeasedRateLimiter> _limiters = new(StringComparer.Ordinal);
    private long _sweptAt = time.GetTimestamp();

    public RateLimitRegistry Registry => registry;

    /// <summary>The limiter of <paramref name="limit"/> for a run of <paramref name="account"/>.</summary>
    public LeasedRateLimiter For(RateLimit limit, string? account)
    {
        var key = limit.KeyFor(account);
        if (_limiters.TryGetValue(key, out var limiter))
        {
            return limiter;
        }

        if (time.GetElapsedTime(Interlocked.Read(ref _sweptAt)) > IdleFor && _limiters.Count >= SweepAbove)
        {
            Interlocked.Exchange(ref _sweptAt, time.GetTimestamp());
            Sweep();
        }

        return _limiters.GetOrAdd(key, k => new LeasedRateLimiter(limit, grains.GetGrain<IRateLimiterGrain>(k), time, registry.Options.MaxInMemoryWait));
    }

    // Per-account limits make a limiter per account: those idle a while go (a limiter made again leases afresh).
    private void Sweep()
    {
        foreach (var (key, limiter) in _limiters)
        {
            if (limiter.IdleDuration > IdleFor)
            {
                // This limiter only: another call may have put a new one under the key meanwhile.
                _limiters.TryRemove(KeyValuePair.Create(key, limiter));
            }
        }
    }

    /// <summary>The limit's grain for a run of <paramref name="account"/>.</summary>
    public IRateLimiterGrain Grain(RateLimit limit, string? account) => grains.GetGrain<IRateLimiterGrain>(limit.KeyFor(account));
}
