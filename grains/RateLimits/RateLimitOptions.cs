namespace Spine.RateLimits;

/// <summary>
/// Cluster-wide rate limits (<c>Spine:RateLimits</c>): per tool, per account and tool, and per chat client, in
/// requests per interval and, for models, tokens per minute. A call over a limit waits for its permit, in memory
/// up to <see cref="MaxInMemoryWait"/>, else durably (journaled); it does not fail.
/// </summary>
public sealed class RateLimitOptions
{
    /// <summary>The limits.</summary>
    public IList<RateLimitRule> Limits { get; } = [];

    /// <summary>
    /// The longest a call waits for a permit in memory; a call whose permit is further away journals the wait and
    /// waits for it durably (after a silo restart, the recovery sweep resumes it). Default 10 s.
    /// </summary>
    public TimeSpan MaxInMemoryWait { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How far ahead a silo leases request permits beyond the calls that wait for one, as a share of a second's
    /// rate; a call that finds a leased permit does not ask the limit's grain. Default 0.05 (50 ms worth).
    /// </summary>
    public double Prefetch { get; set; } = 0.05;

    /// <summary>A rate-limited answer without a Retry-After holds the limit back this long. Default 1 s.</summary>
    public TimeSpan DefaultRetryAfter { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>One limit: of a tool or of a chat client, for the cluster or for each account.</summary>
public sealed class RateLimitRule
{
    /// <summary>The limit's name in <c>spine limits show</c> (default <c>tool:NAME</c> or <c>chat:KEY</c>, with <c>:per-account</c>).</summary>
    public string? Name { get; set; }

    /// <summary>The tool limited (one of <see cref="Tool"/> and <see cref="ChatClient"/>).</summary>
    public string? Tool { get; set; }

    /// <summary>The chat client limited: its key, or <c>default</c> for the unkeyed one.</summary>
    public string? ChatClient { get; set; }

    /// <summary>Whether each account has a limit of its own (runs without an account share one).</summary>
    public bool PerAccount { get; set; }

    /// <summary>Requests per <see cref="Per"/>; null: no request limit (a chat client may limit only tokens).</summary>
    public int? Requests { get; set; }

    /// <summary>The interval <see cref="Requests"/> counts over. Default 1 s.</summary>
    public TimeSpan Per { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Requests that may go at once after a quiet spell (the bucket's capacity). Default 1: none beyond the steady rate.</summary>
    public int Burst { get; set; } = 1;

    /// <summary>A chat client's tokens per minute, counted as the call's input plus its maximum output; null: none.</summary>
    public long? TokensPerMinute { get; set; }

    /// <summary>Tokens that may go at once after a quiet spell; default a minute's worth, as providers count.</summary>
    public long? TokenBurst { get; set; }
}
