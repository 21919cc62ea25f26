using System.Globalization;
using Spine.Client;
using Spine.Runs;

namespace Spine.Cli;

/// <summary>
/// The lines of <c>spine watch</c>: one per journal row (its <see cref="RunTimeline"/> entry), a step's outcome with how
/// long it took since the row before it and, for a model call or a priced tool, what its budget settlement recorded.
/// </summary>
internal sealed class WatchLines
{
    private readonly RunTimeline _timeline = new();

    /// <summary>Whether <paramref name="row"/> ends the run's journal (nothing follows but, for a dead-lettered run, its discard).</summary>
    public static bool Ends(JournalEntryView row) => RunTimeline.IsEnd(row);

    /// <summary>The line of <paramref name="row"/>, given the rows before it.</summary>
    public string Describe(JournalEntryView row)
    {
        var entry = _timeline.Add(row);
        var inv = CultureInfo.InvariantCulture;
        var step = entry.Step is { } s ? s.ToString(inv) : "-";
        var line = $"{entry.RecordedAt.ToString("HH:mm:ss.fff", inv)} {step,4} {entry.Kind,-16} {entry.Name,-24} {entry.Outcome,-5}";
        if (entry.LatencyMs is { } latency)
        {
            line += $" {latency.ToString("0.0", inv),9} ms";
            if (entry.Attempt is > 1)
            {
                line += $" attempt={entry.Attempt.Value.ToString(inv)}";
            }

            if (entry.Tokens is { } tokens)
            {
                line += $" tokens={tokens.ToString(inv)} cost={entry.Cost.GetValueOrDefault().ToString("0.######", inv)}";
            }
        }

        return line;
    }
}
