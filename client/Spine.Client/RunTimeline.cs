using System.Text.Json;
using Spine.Identity;
using Spine.Runs;

namespace Spine.Client;

/// <summary>One journal row as a timeline shows it: what happened, how long it took, what it spent and who decided it.</summary>
/// <param name="Seq">The row's position in the journal.</param>
/// <param name="Kind">The row's kind, e.g. <c>Step</c>, <c>Model</c>, <c>ApprovalDecided</c>.</param>
/// <param name="Step">The workflow step, for step rows.</param>
/// <param name="Name">The step or event name.</param>
/// <param name="Outcome"><c>ok</c> or <c>error</c>.</param>
/// <param name="Attempt">For outcomes and failed attempts: which attempt.</param>
/// <param name="RecordedAt">When the row was recorded.</param>
/// <param name="LatencyMs">For a step's outcome: milliseconds since the row before it.</param>
/// <param name="Tokens">For a step's outcome: the tokens its budget settlement recorded.</param>
/// <param name="Cost">For a step's outcome: the cost its budget settlement recorded.</param>
/// <param name="Actor">Who the row records as having started, sent or decided it.</param>
public sealed record TimelineEntry(
    int Seq,
    string Kind,
    int? Step,
    string Name,
    string Outcome,
    int? Attempt,
    DateTimeOffset RecordedAt,
    double? LatencyMs,
    long? Tokens,
    decimal? Cost,
    SpineActor? Actor);

/// <summary>
/// A run's journal as a timeline, row by row: a step's outcome (<c>Step</c>, <c>Tool</c>, <c>Model</c>, <c>Approval</c>)
/// carries the time since the row before it and what the budget settled for its step; a decision carries its actor.
/// Feed rows in journal order.
/// </summary>
public sealed class RunTimeline
{
    private static readonly string[] Outcomes = ["Step", "Tool", "Model", "Approval"];
    private static readonly string[] Ends = ["RunCompleted", "RunFailed", "RunCancelled", "RunDeadLettered", "RunDiscarded"];

    // The rows whose payload the runtime writes with who asked for them; a step's, tool's or model's payload is their
    // own output, which could hold anything (an "actor" a tool made up among it).
    private static readonly string[] Decisions = ["RunStarted", "SignalReceived", "Approval", "OperatorDecided", "CancelRequested", "RunDiscarded"];
    private readonly Dictionary<int, (long Tokens, decimal Cost)> _settled = [];
    private DateTimeOffset? _previous;

    /// <summary>The timeline of a whole journal.</summary>
    public static IReadOnlyList<TimelineEntry> Of(IEnumerable<JournalEntryView> journal)
    {
        ArgumentNullException.ThrowIfNull(journal);
        var timeline = new RunTimeline();
        return [.. journal.Select(timeline.Add)];
    }

    /// <summary>Whether <paramref name="row"/> ends the run's journal (nothing follows but, for a dead-lettered run, its discard).</summary>
    public static bool IsEnd(JournalEntryView row)
    {
        ArgumentNullException.ThrowIfNull(row);
        return Ends.Contains(row.Kind);
    }

    /// <summary>The entry of <paramref name="row"/>, given the rows added before it.</summary>
    public TimelineEntry Add(JournalEntryView row)
    {
        ArgumentNullException.ThrowIfNull(row);
        var since = _previous is { } previous ? row.RecordedAt - previous : TimeSpan.Zero;
        _previous = row.RecordedAt;
        SpineActor? actor = null;
        if (row.PayloadJson is { } payload && payload.Length > 0 && payload[0] == '{')
        {
            using var document = JsonDocument.Parse(payload);
            var root = document.RootElement;
            if (row.Kind == "BudgetSettled" && row.Step is { } settledStep)
            {
                var tokens = root.TryGetProperty("tokens", out var t) && t.ValueKind == JsonValueKind.Number ? t.GetInt64() : 0;
                var cost = root.TryGetProperty("cost", out var c) && c.ValueKind == JsonValueKind.Number ? c.GetDecimal() : 0m;
                _settled[settledStep] = (tokens, cost);
            }

            if (Decisions.Contains(row.Kind))
            {
                actor = ActorOf(root, "actor") ?? ActorOf(root, "startedBy")
                    ?? (root.TryGetProperty("decision", out var decision) && decision.ValueKind == JsonValueKind.Object ? ActorOf(decision, "actor") : null);
            }
        }

        if (!Outcomes.Contains(row.Kind))
        {
            return new TimelineEntry(row.Seq, row.Kind, row.Step, row.Name, row.Outcome, row.Attempt, row.RecordedAt, null, null, null, actor);
        }

        (long Tokens, decimal Cost)? spent = row.Step is { } step && _settled.TryGetValue(step, out var s) ? s : null;
        return new TimelineEntry(row.Seq, row.Kind, row.Step, row.Name, row.Outcome, row.Attempt, row.RecordedAt,
            since.TotalMilliseconds, spent?.Tokens, spent?.Cost, actor);
    }

    private static SpineActor? ActorOf(JsonElement root, string property)
    {
        if (!root.TryGetProperty(property, out var actor) || actor.ValueKind != JsonValueKind.Object
            || !actor.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.String)
        {
            return null;
        }

        var roles = actor.TryGetProperty("roles", out var r) && r.ValueKind == JsonValueKind.Array
            ? r.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => e.GetString()!).ToList()
            : [];
        return new SpineActor(id.GetString()!, roles);
    }
}
