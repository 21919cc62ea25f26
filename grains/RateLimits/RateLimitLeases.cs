using System.Collections.Concurrent;

namespace Spine.RateLimits;

/// <summary>The silo's limiter of every limit key (a per-account limit has one per account).</summary>
internal sealed class RateLimitLeases(IGrainFactory grains, RateLimitRegistry registry, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, LeasedRateLimiter> _limiters = new(StringComparer.Ordinal);

    public RateLimitRegistry Registry => registry;

    /// <summary>The limiter of <paramref name="limit"/> for a run of <paramref name="account"/>.</summary>
    public LeasedRateLimiter For(RateLimit limit, string? account)
    {
        var key = limit.KeyFor(account);
        return _limiters.TryGetValue(key, out var limiter)
            ? limiter
            : _limiters.GetOrAdd(key, k => new LeasedRateLimiter(limit, grains.GetGrain<IRateLimiterGrain>(k), time, registry.Options.MaxInMemoryWait));
    }

    /// <summary>The limit's grain for a run of <paramref name="account"/>.</summary>
    public IRateLimiterGrain Grain(RateLimit limit, string? account) => grains.GetGrain<IRateLimiterGrain>(limit.KeyFor(account));
}
