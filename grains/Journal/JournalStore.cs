using Npgsql;
using Spine.Errors;
using Spine.Runs;
using Spine.Storage;

namespace Spine.Journal;

/// <summary>Reads of the journal and the run index.</summary>
public sealed class JournalStore(SpineDatabase database)
{
    /// <summary>All journal rows of a run, in order.</summary>
    public async Task<List<JournalRow>> ReadAsync(string runId, CancellationToken cancellationToken = default)
    {
        const string sql = """
            SELECT run_id, seq, kind, step, name, ok, payload, recorded_at, prev_hash, hash, attempt, key_id
            FROM spine_journal WHERE run_id = @run_id ORDER BY seq
            """;
        try
        {
            await using var command = database.DataSource.CreateCommand(sql);
            command.Parameters.AddWithValue("run_id", runId);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            var rows = new List<JournalRow>();
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add(ReadRow(reader));
            }

            return rows;
        }
        catch (Exception e) when (SpineDatabase.Classify(e, "journal read") is { } typed)
        {
            throw typed;
        }
    }

    /// <summary>The columns <see cref="ReadRow"/> reads, in its order.</summary>
    internal const string RowColumns = "run_id, seq, kind, step, name, ok, payload, recorded_at, prev_hash, hash, attempt, key_id";

    /// <summary>Reads a journal row selected as <see cref="RowColumns"/>, starting at column <paramref name="at"/>.</summary>
    internal static JournalRow ReadRow(NpgsqlDataReader reader, int at = 0) => new(
        reader.GetString(at),
        reader.GetInt32(at + 1),
        (JournalKind)reader.GetInt16(at + 2),
        reader.IsDBNull(at + 3) ? null : reader.GetInt32(at + 3),
        reader.GetString(at + 4),
        reader.GetBoolean(at + 5),
        reader.IsDBNull(at + 6) ? null : reader.GetString(at + 6),
        new DateTimeOffset(reader.GetFieldValue<DateTime>(at + 7), TimeSpan.Zero),
        reader.GetFieldValue<byte[]>(at + 8),
        reader.GetFieldValue<byte[]>(at + 9),
        reader.IsDBNull(at + 10) ? null : reader.GetInt32(at + 10),
        reader.IsDBNull(at + 11) ? null : reader.GetString(at + 11));

    /// <summary>Runs matching a query, newest first.</summary>
    public async Task<IReadOnlyList<RunInfo>> ListAsync(RunQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        const string sql = """
            SELECT run_id, workflow_type, workflow_version, account_id, idempotency_key, status, result,
                   error_kind, error_message, created_at, updated_at, error_step, error_step_name
            FROM spine_runs
            WHERE (@status IS NULL OR status = @status)
              AND (@workflow_type IS NULL OR workflow_type = @workflow_type)
              AND (@account_id IS NULL OR account_id = @account_id)
            ORDER BY created_at DESC
            LIMIT @limit
            """;
        try
        {
            await using var command = database.DataSource.CreateCommand(sql);
            command.Parameters.Add(new NpgsqlParameter<short?>("status", NpgsqlTypes.NpgsqlDbType.Smallint) { TypedValue = (short?)query.Status });
            command.Parameters.Add(new NpgsqlParameter<string?>("workflow_type", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = query.WorkflowType });
            command.Parameters.Add(new NpgsqlParameter<string?>("account_id", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = query.AccountId });
            command.Parameters.AddWithValue("limit", Math.Clamp(query.Limit, 1, 10_000));
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            var runs = new List<RunInfo>();
            while (await reader.ReadAsync(cancellationToken))
            {
                var errorKind = reader.IsDBNull(7) ? null : reader.GetString(7);
                runs.Add(new RunInfo
                {
                    RunId = reader.GetString(0),
                    WorkflowType = reader.GetString(1),
                    WorkflowVersion = reader.GetInt32(2),
                    AccountId = reader.IsDBNull(3) ? null : reader.GetString(3),
                    IdempotencyKey = reader.IsDBNull(4) ? null : reader.GetString(4),
                    Status = (RunStatus)reader.GetInt16(5),
                    ResultJson = reader.IsDBNull(6) ? null : reader.GetString(6),
                    Error = errorKind is null ? null : new RunError(
                        errorKind,
                        reader.IsDBNull(8) ? "" : reader.GetString(8),
                        reader.IsDBNull(11) ? null : reader.GetInt32(11),
                        reader.IsDBNull(12) ? null : reader.GetString(12)),
                    CreatedAt = new DateTimeOffset(reader.GetFieldValue<DateTime>(9), TimeSpan.Zero),
                    UpdatedAt = new DateTimeOffset(reader.GetFieldValue<DateTime>(10), TimeSpan.Zero),
                });
            }

            return runs;
        }
        catch (Exception e) when (SpineDatabase.Classify(e, "run listing") is { } typed)
        {
            throw typed;
        }
    }

    /// <summary>
    /// A page of the runs of sweep partition <paramref name="partition"/> that wait for a time no later than
    /// <paramref name="horizon"/> (<c>spine_runs.wake_at</c>), in (wake_at, run_id) order after <paramref name="after"/>.
    /// </summary>
    public async Task<IReadOnlyList<(string RunId, DateTime WakeAt)>> ListDueAsync(int partition, DateTimeOffset horizon, (string RunId, DateTime WakeAt)? after, int limit, CancellationToken cancellationToken = default)
    {
        const string sql = """
            SELECT run_id, wake_at FROM spine_runs
            WHERE wake_at IS NOT NULL AND sweep_partition = @partition AND wake_at <= @horizon
              AND (@after_id IS NULL OR (wake_at, run_id) > (@after_at, @after_id))
            ORDER BY sweep_partition, wake_at, run_id
            LIMIT @limit
            """;
        try
        {
            await using var command = database.DataSource.CreateCommand(sql);
            command.Parameters.Add(new NpgsqlParameter<short>("partition", NpgsqlTypes.NpgsqlDbType.Smallint) { TypedValue = (short)partition });
            command.Parameters.Add(new NpgsqlParameter<DateTime>("horizon", NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = horizon.UtcDateTime });
            command.Parameters.Add(new NpgsqlParameter<string?>("after_id", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = after?.RunId });
            command.Parameters.Add(new NpgsqlParameter<DateTime>("after_at", NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = after?.WakeAt ?? DateTime.UnixEpoch });
            command.Parameters.AddWithValue("limit", limit);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            var page = new List<(string, DateTime)>();
            while (await reader.ReadAsync(cancellationToken))
            {
                page.Add((reader.GetString(0), reader.GetFieldValue<DateTime>(1)));
            }

            return page;
        }
        catch (Exception e) when (SpineDatabase.Classify(e, "recovery sweep") is { } typed)
        {
            throw typed;
        }
    }

    /// <summary>
    /// One page of the runs of sweep partition <paramref name="partition"/> that the index shows as executing
    /// (pending, running, compensating): the ones a dead silo may have dropped. Pages are keyed by
    /// (updated_at, run_id), served by an index of executing runs; pass the last row of a page to get the next.
    /// </summary>
    public async Task<IReadOnlyList<(string RunId, DateTime UpdatedAt)>> ListExecutingAsync(int partition, (string RunId, DateTime UpdatedAt)? after, int limit, CancellationToken cancellationToken = default)
    {
        const string sql = """
            SELECT run_id, updated_at FROM spine_runs
            WHERE status IN (0, 1, 7) AND sweep_partition = @partition
              AND (@after_id IS NULL OR (updated_at, run_id) > (@after_at, @after_id))
            ORDER BY sweep_partition, updated_at, run_id
            LIMIT @limit
            """;
        try
        {
            await using var command = database.DataSource.CreateCommand(sql);
            command.Parameters.Add(new NpgsqlParameter<short>("partition", NpgsqlTypes.NpgsqlDbType.Smallint) { TypedValue = (short)partition });
            command.Parameters.Add(new NpgsqlParameter<string?>("after_id", NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = after?.RunId });
            command.Parameters.Add(new NpgsqlParameter<DateTime>("after_at", NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = after?.UpdatedAt ?? DateTime.UnixEpoch });
            command.Parameters.AddWithValue("limit", limit);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            var page = new List<(string, DateTime)>();
            while (await reader.ReadAsync(cancellationToken))
            {
                page.Add((reader.GetString(0), reader.GetFieldValue<DateTime>(1)));
            }

            return page;
        }
        catch (Exception e) when (SpineDatabase.Classify(e, "recovery sweep") is { } typed)
        {
            throw typed;
        }
    }
}
