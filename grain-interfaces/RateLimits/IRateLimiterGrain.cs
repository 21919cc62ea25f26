namespace Spine.RateLimits;

/// <summary>
/// A limit's rate, as the silos that lease from it configured it: permits (requests or tokens) per second, and
/// how many may go at once after a quiet spell (the bucket's capacity).
/// </summary>
/// <param name="PerSecond">The steady rate.</param>
/// <param name="Capacity">The most permits at once (at least 1).</param>
[GenerateSerializer, Immutable, Alias("spine.RateSpec")]
public sealed record RateSpec([property: Id(0)] double PerSecond, [property: Id(1)] double Capacity);

/// <summary>What a lease got: when each permit asked for may be used, and when the next one would be free.</summary>
/// <param name="At">The UTC ticks at which each granted amount may be used, in the order asked; shorter than asked when the rest would not be free before the horizon.</param>
/// <param name="NextFree">When the first amount not granted would be free (all were granted: a next permit of one).</param>
/// <param name="BlockedUntil">Until when a rate-limited answer holds every permit back (in the past: none does).</param>
/// <param name="Refused">For each amount not granted, in order, the UTC ticks from which it alone would be free.</param>
/// <param name="IssuedAt">The grain's clock when it scheduled the permits: every time above is on that clock.</param>
[GenerateSerializer, Immutable, Alias("spine.RateGrant")]
public sealed record RateGrant(
    [property: Id(0)] long[] At,
    [property: Id(1)] DateTimeOffset NextFree,
    [property: Id(2)] DateTimeOffset BlockedUntil = default,
    [property: Id(3)] long[]? Refused = null,
    [property: Id(4)] DateTimeOffset IssuedAt = default);

/// <summary>What a limit's grain knows of it since it started.</summary>
/// <param name="NextFree">When a next permit of one would be free (null: not used since the grain started).</param>
/// <param name="BlockedUntil">Until when a rate-limited answer holds every permit back.</param>
/// <param name="Granted">Permits granted.</param>
/// <param name="Penalties">Rate-limited answers reported.</param>
[GenerateSerializer, Immutable, Alias("spine.RateLimitState")]
public sealed record RateLimitState(
    [property: Id(0)] DateTimeOffset? NextFree,
    [property: Id(1)] DateTimeOffset? BlockedUntil,
    [property: Id(2)] long Granted,
    [property: Id(3)] long Penalties);

/// <summary>One limit, as configured and as its grain sees it (<c>spine limits show</c>).</summary>
[GenerateSerializer, Immutable, Alias("spine.RateLimitView")]
public sealed record RateLimitView
{
    /// <summary>The limit's name (its rule's name, and <c>/requests</c> or <c>/tokens</c>).</summary>
    [Id(0)] public required string Name { get; init; }

    /// <summary>What it limits: <c>tool</c> or <c>chat</c>.</summary>
    [Id(1)] public required string Target { get; init; }

    /// <summary>The tool's name or the chat client's key (<c>default</c> for the unkeyed one).</summary>
    [Id(2)] public required string Subject { get; init; }

    /// <summary>What a permit is: <c>requests</c> or <c>tokens</c>.</summary>
    [Id(3)] public required string Unit { get; init; }

    /// <summary>Whether each account has a limit of its own.</summary>
    [Id(4)] public bool PerAccount { get; init; }

    /// <summary>The account this view is of (per-account limits only).</summary>
    [Id(5)] public string? Account { get; init; }

    /// <summary>The steady rate, in permits per second.</summary>
    [Id(6)] public double PerSecond { get; init; }

    /// <summary>The most permits at once.</summary>
    [Id(7)] public double Capacity { get; init; }

    /// <summary>When a next permit of one would be free (null: the limit has not been used since its grain started).</summary>
    [Id(8)] public DateTimeOffset? NextFree { get; init; }

    /// <summary>Until when a rate-limited answer (HTTP 429) from the tool or model holds every permit back.</summary>
    [Id(9)] public DateTimeOffset? BlockedUntil { get; init; }

    /// <summary>Permits granted since the limit's grain started.</summary>
    [Id(10)] public long Granted { get; init; }

    /// <summary>Rate-limited answers reported since the limit's grain started.</summary>
    [Id(11)] public long Penalties { get; init; }
}

/// <summary>
/// One rate limit for the whole cluster, keyed by the limit's name (and <c>|account</c> for per-account limits): a
/// token bucket that schedules permits (the generic cell rate algorithm). Silos lease permits in batches and hand
/// them out locally, so the grain is asked once per batch, not once per call.
/// </summary>
[Alias("spine.IRateLimiterGrain")]
public interface IRateLimiterGrain : IGrainWithStringKey
{
    /// <summary>
    /// Schedules permits for <paramref name="amounts"/> (one entry per caller: 1 for a request, the tokens for a
    /// model call), in order, until one would not be free before <paramref name="horizon"/>. No permit is scheduled
    /// sooner than <paramref name="lead"/> from now (at most a second): the time the answer takes to reach its
    /// silo, so that a permit arrives before it is due rather than late, in a bunch with the next ones.
    /// </summary>
    [Alias("LeaseAsync")]
    Task<RateGrant> LeaseAsync(RateSpec spec, long[] amounts, TimeSpan lead, DateTimeOffset horizon);

    /// <summary>The tool or model answered "too many requests": no permit is free before <paramref name="until"/>.</summary>
    [Alias("PenalizeAsync")]
    Task PenalizeAsync(DateTimeOffset until);

    /// <summary>The limit's state.</summary>
    [Alias("GetStateAsync")]
    Task<RateLimitState> GetStateAsync();
}
