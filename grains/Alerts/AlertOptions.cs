namespace Spine.Alerts;

/// <summary>Anomaly detection and its webhook (configuration section <c>Spine:Alerts</c>).</summary>
public sealed class AlertOptions
{
    /// <summary>Detect anomalies. Default true.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>How often the runs that ended are judged. Default 1 minute.</summary>
    public TimeSpan EvaluationPeriod { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How long after a run's end it waits to be judged, so that every silo's index writes up to then are visible (their
    /// clocks may differ, and a commit be late, by this much; a run whose end is recorded later is not judged). Default 30 s.
    /// </summary>
    public TimeSpan SettleLag { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How many runs of a workflow type its baseline holds before any of its alerts is raised. Default 50.</summary>
    public int BaselineRuns { get; set; } = 50;

    /// <summary>How many runs a judgement of failure rate or cost per run covers at least (runs are gathered across evaluations until then). Default 20.</summary>
    public int MinRuns { get; set; } = 20;

    /// <summary>How many past runs the baseline weighs, at most: an exponentially weighted mean over about this many. Default 500.</summary>
    public int BaselineWindow { get; set; } = 500;

    /// <summary>A failure rate this many times its baseline raises <c>failure_rate</c>. Default 3.</summary>
    public double FailureRateFactor { get; set; } = 3;

    /// <summary>...and at least this high (a baseline of 0 would take any failure for a regression). Default 0.1.</summary>
    public double MinFailureRate { get; set; } = 0.1;

    /// <summary>A mean cost per run this many times its baseline raises <c>cost_spike</c>. Default 3.</summary>
    public double CostFactor { get; set; } = 3;

    /// <summary>A run with this many times its type's mean steps, and more than its baseline ever saw, raises <c>runaway_steps</c>. Default 3.</summary>
    public double StepsFactor { get; set; } = 3;

    /// <summary>At most one <c>runaway_steps</c> alert per workflow type in this long. Default 15 minutes.</summary>
    public TimeSpan RunawayCooldown { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Where alerts are POSTed (JSON); none when empty.</summary>
    public Uri? WebhookUrl { get; set; }

    /// <summary>
    /// The webhook's signing secret: each POST carries <c>X-Spine-Signature: sha256=&lt;hex HMAC-SHA256 of
    /// "{X-Spine-Timestamp}.{body}"&gt;</c>. Required with a webhook.
    /// </summary>
    public string? WebhookSecret { get; set; }

    /// <summary>Deliveries of one alert tried at most, across evaluations (each evaluation tries up to 3 times). Default 20.</summary>
    public int MaxDeliveryAttempts { get; set; } = 20;

    /// <summary>Each problem of these settings, naming the setting.</summary>
    internal IEnumerable<string> Problems()
    {
        const string S = "Spine:Alerts:";
        if (EvaluationPeriod < TimeSpan.FromSeconds(1))
        {
            yield return $"{S}EvaluationPeriod is {EvaluationPeriod}: it must be at least 1 second.";
        }

        if (SettleLag < TimeSpan.Zero)
        {
            yield return $"{S}SettleLag is {SettleLag}: it must not be negative.";
        }

        foreach (var (name, value) in new[] { ("BaselineRuns", BaselineRuns), ("MinRuns", MinRuns), ("BaselineWindow", BaselineWindow), ("MaxDeliveryAttempts", MaxDeliveryAttempts) })
        {
            if (value < 1)
            {
                yield return $"{S}{name} is {value}: it must be at least 1.";
            }
        }

        foreach (var (name, value) in new[] { ("FailureRateFactor", FailureRateFactor), ("CostFactor", CostFactor), ("StepsFactor", StepsFactor) })
        {
            if (!(value > 1) || double.IsInfinity(value))
            {
                yield return $"{S}{name} is {value}: it must be a number above 1.";
            }
        }

        if (!(MinFailureRate is > 0 and <= 1))
        {
            yield return $"{S}MinFailureRate is {MinFailureRate}: it must be above 0 and at most 1.";
        }

        if (WebhookUrl is { } url && (!url.IsAbsoluteUri || url.Scheme is not ("http" or "https")))
        {
            yield return $"{S}WebhookUrl '{url}' is not an absolute http or https address.";
        }

        if (WebhookUrl is not null && string.IsNullOrEmpty(WebhookSecret))
        {
            yield return $"{S}WebhookSecret is empty: a webhook's posts must be signed.";
        }
    }
}

/// <summary>Checks <see cref="AlertOptions"/> at start-up.</summary>
internal sealed class AlertOptionsValidator : Microsoft.Extensions.Options.IValidateOptions<AlertOptions>
{
    public Microsoft.Extensions.Options.ValidateOptionsResult Validate(string? name, AlertOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Problems().ToList();
        return problems.Count == 0 ? Microsoft.Extensions.Options.ValidateOptionsResult.Success : Microsoft.Extensions.Options.ValidateOptionsResult.Fail(problems);
    }
}
