using Microsoft.Extensions.Options;
using Npgsql;
using Spine.Storage;

namespace Spine.Slo;

/// <summary>
/// End-to-end success rates per workflow type from the run index: the runs that ended in each window (by the time
/// their index row last changed), completed against failed or dead-lettered, with the error budget the target leaves
/// and how fast it burns.
/// </summary>
public sealed class SloCalculator(SpineDatabase database, IOptions<SloOptions> options, TimeProvider time)
{
    /// <summary>The report of every workflow type that has ended runs in the longest window or a target, or of one.</summary>
    public async Task<IReadOnlyList<SloReport>> ReportAsync(string? workflowType, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        if (settings.Problems().ToList() is { Count: > 0 } problems)
        {
            throw new InvalidOperationException("Invalid reliability targets: " + string.Join(" ", problems));
        }

        var windows = settings.Windows.Order().ToList();
        var now = time.GetUtcNow();

        // One scan of the longest window; each shorter window is a filter on the same rows.
        var select = string.Join(", ", windows.Select((_, i) =>
            $"count(*) FILTER (WHERE status = 3 AND updated_at >= @since{i}), " +
            $"count(*) FILTER (WHERE status IN (4, 8, 9) AND updated_at >= @since{i}), " +
            $"count(*) FILTER (WHERE status = 5 AND updated_at >= @since{i})"));
        await using var command = database.DataSource.CreateCommand($"""
            SELECT workflow_type, {select}
            FROM spine_runs
            WHERE status IN (3, 4, 5, 8, 9) AND updated_at >= @since{windows.Count - 1}
              AND (@workflow::text IS NULL OR workflow_type = @workflow::text)
            GROUP BY workflow_type
            """);
        for (var i = 0; i < windows.Count; i++)
        {
            command.Parameters.AddWithValue($"since{i}", now - windows[i]);
        }

        command.Parameters.Add(new NpgsqlParameter("workflow", NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)workflowType ?? DBNull.Value });
        var counts = new Dictionary<string, long[]>(StringComparer.Ordinal);
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                counts[reader.GetString(0)] = Enumerable.Range(1, windows.Count * 3).Select(reader.GetInt64).ToArray();
            }
        }

        var types = counts.Keys.Concat(settings.Targets.Keys).Where(t => workflowType is null || t == workflowType).Distinct().Order(StringComparer.Ordinal);
        return types.Select(type =>
        {
            var target = settings.Targets.TryGetValue(type, out var t) ? t : (double?)null;
            var row = counts.GetValueOrDefault(type) ?? new long[windows.Count * 3];
            return new SloReport
            {
                WorkflowType = type,
                Target = target,
                Windows = windows.Select((window, i) => Window(window, row[i * 3], row[(i * 3) + 1], row[(i * 3) + 2], target)).ToList(),
            };
        }).ToList();
    }

    private static SloWindow Window(TimeSpan window, long succeeded, long failed, long cancelled, double? target)
    {
        var counted = succeeded + failed;
        var rate = counted == 0 ? (double?)null : succeeded / (double)counted;
        double? remaining = null, burn = null;
        if (target is { } goal && counted > 0)
        {
            var allowed = (1 - goal) * counted;
            remaining = 1 - (failed / allowed);
            burn = (failed / (double)counted) / (1 - goal);
        }

        return new SloWindow { Window = window, Succeeded = succeeded, Failed = failed, Cancelled = cancelled, SuccessRate = rate, ErrorBudgetRemaining = remaining, BurnRate = burn };
    }
}
