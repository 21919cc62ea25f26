using System.Globalization;
using System.Text.Json;
using Spine.Runs;

namespace Spine.Cli;

/// <summary>
/// The lines of <c>spine watch</c>: one per journal row, a step's outcome with how long it took since the row before
/// it and, for a model call or a priced tool, what its budget settlement recorded.
/// </summary>
internal sealed class WatchLines
{
    private static readonly string[] Outcomes = ["Step", "Tool", "Model", "Approval"];
    private static readonly string[] Ends_ = ["RunCompleted", "RunFailed", "RunCancelled", "RunDeadLettered", "RunDiscarded"];
    private readonly Dictionary<int, (long Tokens, decimal Cost)> _settled = [];
    private DateTimeOffset? _previous;

    /// <summary>Whether <paramref name="row"/> ends the run's journal (nothing follows but, for a dead-lettered run, its discard).</summary>
    public static bool Ends(JournalEntryView row) => Ends_.Contains(row.Kind);

    /// <summary>The line of <paramref name="row"/>, given the rows before it.</summary>
    public string Describe(JournalEntryView row)
    {
        ArgumentNullException.ThrowIfNull(row);
        var since = _previous is { } previous ? row.RecordedAt - previous : TimeSpan.Zero;
        _previous = row.RecordedAt;
        var inv = CultureInfo.InvariantCulture;
        var step = row.Step is { } s ? s.ToString(inv) : "-";
        if (row.Kind == "BudgetSettled" && row.Step is { } settledStep && row.PayloadJson is { } payload)
        {
            using var document = JsonDocument.Parse(payload);
            var tokens = document.RootElement.TryGetProperty("tokens", out var t) ? t.GetInt64() : 0;
            var cost = document.RootElement.TryGetProperty("cost", out var c) ? c.GetDecimal() : 0m;
            _settled[settledStep] = (tokens, cost);
        }

        var line = $"{row.RecordedAt.ToString("HH:mm:ss.fff", inv)} {step,4} {row.Kind,-16} {row.Name,-24} {row.Outcome,-5}";
        if (Outcomes.Contains(row.Kind))
        {
            line += $" {since.TotalMilliseconds.ToString("0.0", inv),9} ms";
            if (row.Attempt is > 1)
            {
                line += $" attempt={row.Attempt.Value.ToString(inv)}";
            }

            if (row.Step is { } outcomeStep && _settled.TryGetValue(outcomeStep, out var spent))
            {
                line += $" tokens={spent.Tokens.ToString(inv)} cost={spent.Cost.ToString("0.######", inv)}";
            }
        }

        return line;
    }
}
