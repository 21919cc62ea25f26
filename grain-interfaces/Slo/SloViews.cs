namespace Spine.Slo;

/// <summary>A workflow type's end-to-end success over rolling windows, against its target (<c>spine slo</c>).</summary>
[GenerateSerializer, Immutable, Alias("spine.SloReport")]
public sealed record SloReport
{
    /// <summary>The workflow type.</summary>
    [Id(0)] public required string WorkflowType { get; init; }

    /// <summary>The success-rate target (<c>Spine:Slo:Targets</c>), e.g. 0.99; null when none is configured.</summary>
    [Id(1)] public double? Target { get; init; }

    /// <summary>One entry per window, shortest first.</summary>
    [Id(2)] public IReadOnlyList<SloWindow> Windows { get; init; } = [];
}

/// <summary>The runs of one workflow type that ended within one window.</summary>
[GenerateSerializer, Immutable, Alias("spine.SloWindow")]
public sealed record SloWindow
{
    /// <summary>The window: the runs that ended in the last <see cref="Window"/>.</summary>
    [Id(0)] public TimeSpan Window { get; init; }

    /// <summary>Runs that completed.</summary>
    [Id(1)] public long Succeeded { get; init; }

    /// <summary>Runs that failed or were dead-lettered (a discarded one was dead-lettered first).</summary>
    [Id(2)] public long Failed { get; init; }

    /// <summary>Runs cancelled: a caller's choice, counted in neither.</summary>
    [Id(3)] public long Cancelled { get; init; }

    /// <summary>Succeeded / (succeeded + failed); null when no run counted.</summary>
    [Id(4)] public double? SuccessRate { get; init; }

    /// <summary>
    /// The error budget left: 1 - failed / (allowed failures), where allowed = (1 - target) × counted runs; 1 is untouched,
    /// 0 spent, below 0 overspent. Null without a target or without runs.
    /// </summary>
    [Id(5)] public double? ErrorBudgetRemaining { get; init; }

    /// <summary>How fast the budget burns: the failure rate over the failure rate the target allows (1: exactly at budget). Null without a target or runs.</summary>
    [Id(6)] public double? BurnRate { get; init; }
}

/// <summary>What the runs of one workflow type that ended in one hour spent (their budget settlements).</summary>
[GenerateSerializer, Immutable, Alias("spine.CostBucket")]
public sealed record CostBucket
{
    /// <summary>The workflow type.</summary>
    [Id(0)] public required string WorkflowType { get; init; }

    /// <summary>The hour's start (UTC).</summary>
    [Id(1)] public DateTimeOffset Hour { get; init; }

    /// <summary>Runs that ended in it.</summary>
    [Id(2)] public long Runs { get; init; }

    /// <summary>Tokens they settled.</summary>
    [Id(3)] public long Tokens { get; init; }

    /// <summary>Cost they settled, at the configured prices.</summary>
    [Id(4)] public decimal Cost { get; init; }
}
