namespace Spine.Breakers;

/// <summary>When a tool's circuit breaker opens and how it recovers (per tool, or <c>Spine:Breaker</c>).</summary>
public sealed record BreakerPolicy
{
    /// <summary>The failure rate (0..1) in the window at or above which the breaker opens. Default 0.5.</summary>
    public double FailureRateThreshold { get; init; } = 0.5;

    /// <summary>The fewest calls in the window before the rate counts. Default 10.</summary>
    public int MinimumCalls { get; init; } = 10;

    /// <summary>The sliding window of outcomes. Default 30 s.</summary>
    public TimeSpan Window { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an open breaker fails calls fast before letting a probe through. Default 15 s.</summary>
    public TimeSpan CoolDown { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long a silo trusts its cached verdict. Default 1 s.</summary>
    public TimeSpan CacheFor { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>False turns the breaker off for the tool. Default true.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>Every value out of range, each message naming its setting as <c>{owner}:{member}</c>.</summary>
    internal IEnumerable<string> Problems(string owner)
    {
        if (double.IsNaN(FailureRateThreshold) || FailureRateThreshold is <= 0 or > 1)
        {
            yield return $"{owner}:FailureRateThreshold is {FailureRateThreshold}: it must be greater than 0 and at most 1.";
        }

        if (MinimumCalls < 1)
        {
            yield return $"{owner}:MinimumCalls is {MinimumCalls}: it must be at least 1.";
        }

        if (Window <= TimeSpan.Zero)
        {
            yield return $"{owner}:Window is {Window}: it must be positive.";
        }

        if (CoolDown <= TimeSpan.Zero)
        {
            yield return $"{owner}:CoolDown is {CoolDown}: it must be positive.";
        }

        if (CacheFor < TimeSpan.Zero)
        {
            yield return $"{owner}:CacheFor is {CacheFor}: it must not be negative.";
        }
    }
}
