namespace Spine.RateLimits;

/// <summary>
/// A token bucket kept as a schedule (the generic cell rate algorithm): <see cref="FullAt"/> is when the bucket
/// would be full again, and a permit of <c>n</c> is free once the bucket holds <c>n</c>, that is from
/// <c>FullAt - (capacity - n) / rate</c>. Taking it moves <see cref="FullAt"/> on by <c>n / rate</c>. An amount
/// larger than the capacity waits for a full bucket. No time passes inside: every answer is for the given now.
/// </summary>
internal sealed class PermitSchedule(DateTimeOffset fullAt)
{
    /// <summary>When the bucket would be full, were nothing more taken.</summary>
    public DateTimeOffset FullAt { get; private set; } = fullAt;

    /// <summary>Until when no permit is free at all (a rate-limited answer).</summary>
    public DateTimeOffset BlockedUntil { get; private set; }

    /// <summary>When a permit of <paramref name="amount"/> would be free, at <paramref name="now"/>.</summary>
    public DateTimeOffset FreeAt(RateSpec spec, long amount, DateTimeOffset now)
    {
        // A bucket is never fuller than full: a schedule last used long ago (or never) counts from now.
        var head = Math.Max(0, spec.Capacity - amount) / spec.PerSecond;
        var free = Max(FullAt, now) - TimeSpan.FromSeconds(head);
        return Max(Max(free, now), BlockedUntil);
    }

    /// <summary>Takes a permit of <paramref name="amount"/>: returns when it may be used.</summary>
    public DateTimeOffset Take(RateSpec spec, long amount, DateTimeOffset now)
    {
        var at = FreeAt(spec, amount, now);
        FullAt = Max(Max(FullAt, now), at) + TimeSpan.FromSeconds(amount / spec.PerSecond);
        return at;
    }

    /// <summary>Holds every permit back until <paramref name="until"/>.</summary>
    public void Block(DateTimeOffset until) => BlockedUntil = Max(BlockedUntil, until);

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;
}
