namespace Spine.Alerts;

/// <summary>An anomaly alert: a workflow type departed sharply from its baseline.</summary>
[GenerateSerializer, Immutable, Alias("spine.AlertView")]
public sealed record AlertView
{
    /// <summary>The alert's id (ascending in the order alerts were raised).</summary>
    [Id(0)] public long AlertId { get; init; }

    /// <summary>When it was raised.</summary>
    [Id(1)] public DateTimeOffset RaisedAt { get; init; }

    /// <summary>The workflow type.</summary>
    [Id(2)] public required string WorkflowType { get; init; }

    /// <summary>
    /// What departed: <c>failure_rate</c>, <c>cost_spike</c>, <c>new_tool</c> or <c>runaway_steps</c>.
    /// </summary>
    [Id(3)] public required string Rule { get; init; }

    /// <summary>What it is about: the tool (<c>new_tool</c>) or the run (<c>new_tool</c>, <c>runaway_steps</c>); null for rates.</summary>
    [Id(4)] public string? Subject { get; init; }

    /// <summary>What an operator reads.</summary>
    [Id(5)] public required string Message { get; init; }

    /// <summary>The value observed: a failure rate, a mean cost per run, a run's step count; 1 for a new tool.</summary>
    [Id(6)] public double Observed { get; init; }

    /// <summary>The baseline it departed from (null for a new tool).</summary>
    [Id(7)] public double? Baseline { get; init; }

    /// <summary>How many runs the observation covers.</summary>
    [Id(8)] public int Runs { get; init; }

    /// <summary>When the webhook took it (null: not yet, or no webhook).</summary>
    [Id(9)] public DateTimeOffset? DeliveredAt { get; init; }

    /// <summary>How many times the webhook was tried.</summary>
    [Id(10)] public int DeliveryAttempts { get; init; }

    /// <summary>The last delivery's error, while it failed.</summary>
    [Id(11)] public string? LastDeliveryError { get; init; }
}

/// <summary>A filter of alerts, newest first. Every set member must match.</summary>
[GenerateSerializer, Immutable, Alias("spine.AlertQuery")]
public sealed record AlertQuery
{
    /// <summary>Only alerts of this workflow type.</summary>
    [Id(0)] public string? WorkflowType { get; init; }

    /// <summary>Only alerts raised at or after this time.</summary>
    [Id(1)] public DateTimeOffset? Since { get; init; }

    /// <summary>At most this many. Default 100, at most 10,000.</summary>
    [Id(2)] public int Limit { get; init; } = 100;
}

/// <summary>
/// The cluster's one anomaly detector: keeps baselines per workflow type of failure rate, cost per run, steps per run
/// and tool mix from the runs that end, raises an alert on a sharp departure, stores it, and posts it to the webhook.
/// Every silo asks it to evaluate each <c>Spine:Alerts:EvaluationPeriod</c>.
/// </summary>
[Alias("spine.IAlertGrain")]
public interface IAlertGrain : IGrainWithIntegerKey
{
    /// <summary>
    /// Judges the runs that ended since the last evaluation (older than the settle lag), returns the alerts it raised,
    /// and starts posting every undelivered alert to the webhook (in the background).
    /// </summary>
    [Alias("EvaluateAsync")]
    Task<IReadOnlyList<AlertView>> EvaluateAsync();

    /// <summary>A silo's periodic ask: evaluates unless an evaluation ran within half a period.</summary>
    [Alias("TickAsync")]
    Task TickAsync();
}
