using Npgsql;
using NpgsqlTypes;
using Spine.Runs;
using Spine.Storage;

namespace Spine.Alerts;

/// <summary>The alerts table (<c>spine_alerts</c>, migration 0010) and what the detector reads of ended runs.</summary>
public sealed class AlertStore(SpineDatabase database)
{
    private const string Columns = "alert_id, raised_at, workflow_type, rule, subject, message, observed, baseline, runs, delivered_at, delivery_attempts, last_delivery_error";

    /// <summary>The database's clock.</summary>
    internal async Task<DateTimeOffset> NowAsync(CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand("SELECT now()");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return reader.GetFieldValue<DateTimeOffset>(0);
    }

    /// <summary>
    /// Runs that completed, failed or were dead-lettered after <paramref name="afterAt"/> (or at it, with an id after
    /// <paramref name="afterRunId"/> when one is given) and at or before <paramref name="until"/>, in that order, with
    /// their step count, cost and tools.
    /// </summary>
    internal async Task<List<(RunFeatures Run, DateTimeOffset EndedAt)>> EndedRunsAsync(
        DateTimeOffset afterAt, string afterRunId, DateTimeOffset until, int max, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand("""
            SELECT r.run_id, r.workflow_type, r.status, r.updated_at, f.steps, f.cost, f.tools
            FROM spine_runs r
            CROSS JOIN LATERAL (
                SELECT count(*) FILTER (WHERE j.kind IN (1, 2, 3)) AS steps,
                       coalesce(sum((j.payload::jsonb ->> 'cost')::double precision) FILTER (WHERE j.kind = 17), 0) AS cost,
                       coalesce(array_agg(DISTINCT j.name) FILTER (WHERE j.kind = 2), '{}') AS tools
                FROM spine_journal j
                WHERE j.run_id = r.run_id) f
            WHERE r.status IN (3, 4, 8)
              AND r.updated_at >= @afterAt AND r.updated_at <= @until
              AND (r.updated_at > @afterAt OR (@afterRunId <> '' AND r.updated_at = @afterAt AND r.run_id > @afterRunId))
            ORDER BY r.updated_at, r.run_id
            LIMIT @max
            """);
        command.Parameters.AddWithValue("afterAt", afterAt);
        command.Parameters.AddWithValue("afterRunId", afterRunId);
        command.Parameters.AddWithValue("until", until);
        command.Parameters.AddWithValue("max", max);
        var runs = new List<(RunFeatures, DateTimeOffset)>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var status = (RunStatus)reader.GetInt16(2);
            runs.Add((new RunFeatures(reader.GetString(0), reader.GetString(1), status != RunStatus.Completed, (int)reader.GetInt64(4), reader.GetDouble(5),
                reader.GetFieldValue<string[]>(6)), reader.GetFieldValue<DateTimeOffset>(3)));
        }

        return runs;
    }

    /// <summary>
    /// Stores alerts; one whose <c>dedupe</c> key is stored already (an evaluation repeated after a crash) is not
    /// stored again. Returns those stored now.
    /// </summary>
    internal async Task<List<AlertView>> AddAsync(IReadOnlyList<(RaisedAlert Alert, string Dedupe)> alerts, CancellationToken cancellationToken)
    {
        var stored = new List<AlertView>();
        if (alerts.Count == 0)
        {
            return stored;
        }

        await using var batch = database.DataSource.CreateBatch();
        foreach (var (alert, dedupe) in alerts)
        {
            var command = new NpgsqlBatchCommand($"""
                INSERT INTO spine_alerts (raised_at, workflow_type, rule, subject, message, observed, baseline, runs, dedupe_key)
                VALUES (now(), @type, @rule, @subject, @message, @observed, @baseline, @runs, @dedupe)
                ON CONFLICT (dedupe_key) DO NOTHING
                RETURNING {Columns}
                """);
            command.Parameters.AddWithValue("type", alert.WorkflowType);
            command.Parameters.AddWithValue("rule", alert.Rule);
            command.Parameters.Add(new NpgsqlParameter("subject", NpgsqlDbType.Text) { Value = (object?)alert.Subject ?? DBNull.Value });
            command.Parameters.AddWithValue("message", alert.Message);
            command.Parameters.AddWithValue("observed", alert.Observed);
            command.Parameters.Add(new NpgsqlParameter("baseline", NpgsqlDbType.Double) { Value = (object?)alert.Baseline ?? DBNull.Value });
            command.Parameters.AddWithValue("runs", alert.Runs);
            command.Parameters.AddWithValue("dedupe", dedupe);
            batch.BatchCommands.Add(command);
        }

        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        do
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                stored.Add(Read(reader));
            }
        }
        while (await reader.NextResultAsync(cancellationToken));
        return stored;
    }

    /// <summary>Alerts not yet delivered that may be tried again, oldest first.</summary>
    internal async Task<List<AlertView>> UndeliveredAsync(int maxAttempts, int limit, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand($"""
            SELECT {Columns} FROM spine_alerts
            WHERE delivered_at IS NULL AND delivery_attempts < @maxAttempts
            ORDER BY alert_id LIMIT @limit
            """);
        command.Parameters.AddWithValue("maxAttempts", maxAttempts);
        command.Parameters.AddWithValue("limit", limit);
        return await ReadAllAsync(command, cancellationToken);
    }

    /// <summary>Records a delivery: its attempts, and when it succeeded or why it failed.</summary>
    internal async Task RecordDeliveryAsync(long alertId, int attempts, bool delivered, string? error, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand("""
            UPDATE spine_alerts
            SET delivery_attempts = delivery_attempts + @attempts,
                delivered_at = CASE WHEN @delivered THEN now() ELSE NULL END,
                last_delivery_error = @error
            WHERE alert_id = @id AND delivered_at IS NULL
            """);
        command.Parameters.AddWithValue("id", alertId);
        command.Parameters.AddWithValue("attempts", attempts);
        command.Parameters.AddWithValue("delivered", delivered);
        command.Parameters.Add(new NpgsqlParameter("error", NpgsqlDbType.Text) { Value = (object?)error ?? DBNull.Value });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Alerts, newest first.</summary>
    public async Task<IReadOnlyList<AlertView>> ListAsync(AlertQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        await using var command = database.DataSource.CreateCommand($"""
            SELECT {Columns} FROM spine_alerts
            WHERE (@type::text IS NULL OR workflow_type = @type::text) AND (@since::timestamptz IS NULL OR raised_at >= @since::timestamptz)
            ORDER BY alert_id DESC LIMIT @limit
            """);
        command.Parameters.Add(new NpgsqlParameter("type", NpgsqlDbType.Text) { Value = (object?)query.WorkflowType ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("since", NpgsqlDbType.TimestampTz) { Value = (object?)query.Since ?? DBNull.Value });
        command.Parameters.AddWithValue("limit", Math.Clamp(query.Limit, 1, 10_000));
        return await ReadAllAsync(command, cancellationToken);
    }

    private static async Task<List<AlertView>> ReadAllAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        var alerts = new List<AlertView>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            alerts.Add(Read(reader));
        }

        return alerts;
    }

    private static AlertView Read(NpgsqlDataReader reader) => new()
    {
        AlertId = reader.GetInt64(0),
        RaisedAt = reader.GetFieldValue<DateTimeOffset>(1),
        WorkflowType = reader.GetString(2),
        Rule = reader.GetString(3),
        Subject = reader.IsDBNull(4) ? null : reader.GetString(4),
        Message = reader.GetString(5),
        Observed = reader.GetDouble(6),
        Baseline = reader.IsDBNull(7) ? null : reader.GetDouble(7),
        Runs = reader.GetInt32(8),
        DeliveredAt = reader.IsDBNull(9) ? null : reader.GetFieldValue<DateTimeOffset>(9),
        DeliveryAttempts = reader.GetInt32(10),
        LastDeliveryError = reader.IsDBNull(11) ? null : reader.GetString(11),
    };
}
