using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Spine.Telemetry;

/// <summary>
/// Spine's own telemetry: the <c>Spine</c> ActivitySource (a span per step attempt, every span of a run in the run's
/// one trace) and the <c>Spine</c> Meter. Export both with OpenTelemetry (<c>AddSource("Spine")</c>, <c>AddMeter("Spine")</c>).
/// </summary>
public static class SpineTelemetry
{
    /// <summary>The name of the ActivitySource and of the Meter.</summary>
    public const string Name = "Spine";

    private static readonly string? Version = typeof(SpineTelemetry).Assembly.GetName().Version?.ToString();

    /// <summary>The source of Spine's spans.</summary>
    public static ActivitySource Source { get; } = new(Name, Version);

    /// <summary>The meter of Spine's metrics.</summary>
    public static Meter Meter { get; } = new(Name, Version);

    /// <summary>Runs started, by <c>spine.workflow.type</c>.</summary>
    internal static Counter<long> RunsStarted { get; } = Meter.CreateCounter<long>("spine.runs.started", "{run}", "Runs started.");

    /// <summary>Runs that reached an end (or the dead-letter queue), by <c>spine.workflow.type</c> and <c>spine.run.status</c>.</summary>
    internal static Counter<long> RunsEnded { get; } = Meter.CreateCounter<long>("spine.runs.ended", "{run}", "Runs that completed, failed, were cancelled or were dead-lettered.");

    /// <summary>How long step attempts took, by <c>spine.step.kind</c>, <c>spine.tool.name</c> and <c>spine.outcome</c>.</summary>
    internal static Histogram<double> AttemptDuration { get; } = Meter.CreateHistogram<double>("spine.step.attempt.duration", "s", "How long one attempt of a step, tool call or model call took.");

    /// <summary>Failed attempts, by <c>spine.step.kind</c> and <c>spine.error.class</c> (transient ones are retried).</summary>
    internal static Counter<long> AttemptsFailed { get; } = Meter.CreateCounter<long>("spine.step.attempts.failed", "{attempt}", "Attempts that failed, by error class.");

    /// <summary>Tokens models used, by <c>spine.account</c>, <c>spine.workflow.type</c>, <c>gen_ai.request.model</c> and <c>gen_ai.token.type</c> (<c>input</c>, <c>output</c>).</summary>
    internal static Counter<long> ModelTokens { get; } = Meter.CreateCounter<long>("spine.model.tokens", "{token}", "Tokens model calls used, by account and model.");

    /// <summary>What calls cost at the configured prices, by <c>spine.account</c>, <c>spine.workflow.type</c>, <c>spine.step.kind</c> and <c>gen_ai.request.model</c> or <c>spine.tool.name</c>.</summary>
    internal static Counter<double> CallCost { get; } = Meter.CreateCounter<double>("spine.cost", "{cost}", "What model and priced tool calls cost, by account and model or tool.");

    /// <summary>Anomaly alerts raised, by <c>spine.alert.rule</c> and <c>spine.workflow.type</c>.</summary>
    internal static Counter<long> AlertsRaised { get; } = Meter.CreateCounter<long>("spine.alerts.raised", "{alert}", "Anomaly alerts raised, by rule and workflow type.");

    /// <summary>A new trace for a run no caller's trace covers: the W3C <c>traceparent</c> of a span that stands for the run.</summary>
    internal static string NewTraceParent() =>
        $"00-{ActivityTraceId.CreateRandom().ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-01";

    /// <summary>The run's trace context from its stored <c>traceparent</c> (none: a default context, so spans root themselves).</summary>
    internal static ActivityContext Parse(string? traceParent) =>
        traceParent is not null && ActivityContext.TryParse(traceParent, null, isRemote: true, out var context) ? context : default;
}
