using Spine.Storage;

namespace Spine.Slo;

/// <summary>
/// Spend per workflow type and hour, of the runs that ended in a window: their index rows (by when they ended) joined
/// to their budget settlements. It reads every run that ended in the window, so it is for a console's chart over
/// hours, not for days of a busy cluster.
/// </summary>
public sealed class CostCalculator(SpineDatabase database, TimeProvider time)
{
    /// <summary>The longest window read.</summary>
    public static readonly TimeSpan MaxWindow = TimeSpan.FromDays(7);

    /// <summary>The spend of the runs that ended in the last <paramref name="window"/> (1 hour to 7 days), oldest hour first.</summary>
    /// <exception cref="Errors.InvalidPayloadException">The window is outside 1 hour to 7 days.</exception>
    public async Task<IReadOnlyList<CostBucket>> ReportAsync(TimeSpan window, CancellationToken cancellationToken)
    {
        if (window < TimeSpan.FromHours(1) || window > MaxWindow)
        {
            throw new Errors.InvalidPayloadException("cost window", $"{window} is outside 1 hour to 7 days");
        }

        await using var command = database.DataSource.CreateCommand("""
            SELECT r.workflow_type, date_trunc('hour', r.updated_at, 'UTC') AS hour, count(*), sum(f.tokens)::bigint, sum(f.cost)
            FROM spine_runs r
            CROSS JOIN LATERAL (
                SELECT coalesce(sum((j.payload::jsonb ->> 'tokens')::bigint), 0) AS tokens,
                       coalesce(sum((j.payload::jsonb ->> 'cost')::numeric), 0) AS cost
                FROM spine_journal j
                WHERE j.run_id = r.run_id AND j.kind = 17) f
            WHERE r.status IN (3, 4, 5, 8, 9) AND r.updated_at >= @since
            GROUP BY 1, 2
            ORDER BY 2, 1
            """);
        command.Parameters.AddWithValue("since", time.GetUtcNow() - window);
        var buckets = new List<CostBucket>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            buckets.Add(new CostBucket
            {
                WorkflowType = reader.GetString(0),
                Hour = reader.GetFieldValue<DateTimeOffset>(1),
                Runs = reader.GetInt64(2),
                Tokens = reader.GetInt64(3),
                Cost = reader.GetDecimal(4),
            });
        }

        return buckets;
    }
}
