namespace Spine.Recovery;

/// <summary>
/// Bounded exponential backoff with jitter. Attempt n (from 1) that fails transiently waits
/// min(<see cref="InitialDelay"/> × <see cref="Multiplier"/>^(n-1), <see cref="MaxDelay"/>) ± <see cref="Jitter"/>
/// before attempt n+1, until <see cref="MaxAttempts"/> or <see cref="TotalDeadline"/> is reached.
/// </summary>
public sealed record RetryPolicy
{
    /// <summary>Attempts in all, the first included. Default 4. 1 means no retry.</summary>
    public int MaxAttempts { get; init; } = 4;

    /// <summary>The wait after the first failure. Default 500 ms.</summary>
    public TimeSpan InitialDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The growth of the wait per attempt. Default 2.</summary>
    public double Multiplier { get; init; } = 2.0;

    /// <summary>The longest wait. Default 1 minute.</summary>
    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Random spread of each wait, as a fraction (0.2 = ±20%), so that retries of many runs do not arrive together. Default 0.2.</summary>
    public double Jitter { get; init; } = 0.2;

    /// <summary>No retry starts later than this after the step's first attempt. Default none.</summary>
    public TimeSpan? TotalDeadline { get; init; }

    /// <summary>
    /// How long a step waits out an open circuit breaker before it counts as exhausted (then it escalates to
    /// an operator when the step or workflow says so, else the run is dead-lettered). Waiting uses no
    /// attempts and writes one journal row per wait, however many cool-downs it spans. Default 1 hour.
    /// </summary>
    public TimeSpan MaxCircuitWait { get; init; } = TimeSpan.FromHours(1);

    /// <summary>No retries at all.</summary>
    public static RetryPolicy None { get; } = new() { MaxAttempts = 1 };

    /// <summary>A uniformly drawn unit for <see cref="DelayAfter"/>'s jitter, in [0, 1).</summary>
    public static double DrawJitter() => System.Security.Cryptography.RandomNumberGenerator.GetInt32(int.MaxValue) / (double)int.MaxValue;

    /// <summary>The wait after failed attempt <paramref name="attempt"/> (from 1); <paramref name="unit"/> is a random number in [0, 1).</summary>
    public TimeSpan DelayAfter(int attempt, double unit)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(attempt, 1);
        var raw = InitialDelay.TotalMilliseconds * Math.Pow(Multiplier, attempt - 1);
        var capped = Math.Min(raw, MaxDelay.TotalMilliseconds);
        var spread = capped * Jitter * ((unit * 2) - 1);
        return TimeSpan.FromMilliseconds(Math.Max(0, capped + spread));
    }

    /// <summary>Throws with a message naming the setting when a value is out of range.</summary>
    /// <param name="owner">The setting this policy is, e.g. <c>Spine:Retry:Tool</c>; messages name its members under it.</param>
    public void Validate(string owner)
    {
        if (Problems(owner).FirstOrDefault() is { } problem)
        {
            throw new InvalidOperationException(problem);
        }
    }

    /// <summary>Every value out of range, each message naming its setting as <c>{owner}:{member}</c>.</summary>
    internal IEnumerable<string> Problems(string owner)
    {
        if (MaxAttempts < 1)
        {
            yield return $"{owner}:MaxAttempts is {MaxAttempts}: it must be at least 1.";
        }

        if (InitialDelay < TimeSpan.Zero)
        {
            yield return $"{owner}:InitialDelay is {InitialDelay}: it must not be negative.";
        }

        if (MaxDelay < InitialDelay)
        {
            yield return $"{owner}:MaxDelay is {MaxDelay}: it must be at least InitialDelay ({InitialDelay}).";
        }

        if (double.IsNaN(Multiplier) || Multiplier < 1)
        {
            yield return $"{owner}:Multiplier is {Multiplier}: it must be at least 1.";
        }

        if (double.IsNaN(Jitter) || Jitter is < 0 or > 1)
        {
            yield return $"{owner}:Jitter is {Jitter}: it must be between 0 and 1.";
        }

        if (TotalDeadline < TimeSpan.Zero)
        {
            yield return $"{owner}:TotalDeadline is {TotalDeadline}: it must not be negative.";
        }

        if (MaxCircuitWait < TimeSpan.Zero)
        {
            yield return $"{owner}:MaxCircuitWait is {MaxCircuitWait}: it must not be negative.";
        }
    }
}

/// <summary>The default retry policy per step kind (configuration section <c>Spine:Retry</c>).</summary>
public sealed class RetryDefaults
{
    /// <summary>For <c>ctx.RunAsync</c> side effects. Default: 4 attempts from 500 ms.</summary>
    public RetryPolicy Step { get; set; } = new();

    /// <summary>For tool calls whose tool names no policy. Default: 4 attempts from 500 ms.</summary>
    public RetryPolicy Tool { get; set; } = new();

    /// <summary>For model turns. Default: 5 attempts from 1 s (rate limits are common).</summary>
    public RetryPolicy Model { get; set; } = new() { MaxAttempts = 5, InitialDelay = TimeSpan.FromSeconds(1) };

    /// <summary>For compensations (they must finish). Default: 8 attempts from 500 ms.</summary>
    public RetryPolicy Compensation { get; set; } = new() { MaxAttempts = 8 };
}
