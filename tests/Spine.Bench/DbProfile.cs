using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace Spine.Bench;

/// <summary>
/// Optional (--profile) timing of every PostgreSQL command the silo sends, through Npgsql's activity source:
/// PostgreSQL here has no pg_stat_statements, and this also sees the client side (pool wait, network, fsync).
/// Commands are grouped by what they do (journal commit, reminder write, journal read, ...).
/// </summary>
public sealed class DbProfile : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly ConcurrentDictionary<string, ConcurrentBag<double>> _byKind = new(StringComparer.Ordinal);

    /// <summary>Starts listening.</summary>
    public DbProfile()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = Record,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    /// <summary>Forgets what was recorded so far.</summary>
    public void Reset() => _byKind.Clear();

    /// <summary>Writes one line per kind of command: count, mean, p50, p99 and total time, to stderr.</summary>
    public void Report(string phase, double phaseSeconds)
    {
        Console.Error.WriteLine($"  [profile {phase}] PostgreSQL commands seen from the silo (Npgsql activities), phase {phaseSeconds:F2} s:");
        foreach (var (kind, bag) in _byKind.OrderByDescending(p => p.Value.Sum()))
        {
            var values = bag.ToArray();
            Array.Sort(values);
            var total = values.Sum();
            Console.Error.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"    {kind,-34} n={values.Length,7} ({values.Length / phaseSeconds,8:F1}/s)  mean={values.Average(),7:F2} ms  p50={Stats.Percentile(values, 50),7:F2}  p99={Stats.Percentile(values, 99),7:F2}  busy={total / 1000 / phaseSeconds,5:F2} conn-s/s"));
        }
    }

    /// <summary>How many commands of a kind were recorded.</summary>
    public int Count(string kind) => _byKind.TryGetValue(kind, out var bag) ? bag.Count : 0;

    /// <inheritdoc />
    public void Dispose() => _listener.Dispose();

    private static string Classify(string? text, string operation)
    {
        if (text is null)
        {
            // Npgsql's own operations without SQL, such as opening a physical connection.
            return $"({operation})";
        }

        if (text.Contains("INSERT INTO spine_journal", StringComparison.Ordinal))
        {
            return text.Contains("spine_runs", StringComparison.Ordinal) ? "journal commit (+run row)" : "journal commit";
        }

        if (text.Contains("INSERT INTO spine_runs", StringComparison.Ordinal))
        {
            return "run row upsert only";
        }

        if (text.Contains("FROM spine_journal", StringComparison.Ordinal))
        {
            return "journal read (activation)";
        }

        if (text.Contains("orleansremindertable", StringComparison.OrdinalIgnoreCase))
        {
            if (text.Contains("DELETE", StringComparison.OrdinalIgnoreCase))
            {
                return "reminder delete";
            }

            return text.Contains("INSERT", StringComparison.OrdinalIgnoreCase) ? "reminder upsert" : "reminder read";
        }

        if (text.Contains("orleansmembership", StringComparison.OrdinalIgnoreCase))
        {
            return "membership";
        }

        var firstLine = text.TrimStart().Split('\n')[0];
        return firstLine.Length <= 34 ? firstLine : firstLine[..34];
    }

    private void Record(Activity activity)
    {
        var text = activity.GetTagItem("db.query.text") as string;
        var kind = Classify(text, activity.DisplayName);
        _byKind.GetOrAdd(kind, _ => []).Add(activity.Duration.TotalMilliseconds);
    }
}
