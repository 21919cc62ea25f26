using System.Data;
using Npgsql;
using NpgsqlTypes;
using Spine.Journal;
using Spine.Runs;
using Spine.Storage;

namespace Spine.Audit;

/// <summary>Where a run's journal ends, as the trigger that appends its rows recorded it (<c>spine_journal_heads</c>).</summary>
/// <param name="Seq">The last row's seq.</param>
/// <param name="Mac">The last row's hash.</param>
/// <param name="LegacyRows">How many rows the run had before the chain was keyed.</param>
internal sealed record JournalHead(int Seq, byte[] Mac, int LegacyRows);

/// <summary>What the run index says of a run, as far as its audit goes.</summary>
internal sealed record IndexEntry(RunStatus Status, int JournalSeq, string? Result);

/// <summary>Everything the database holds of one run, read in one snapshot.</summary>
internal sealed record RunRecord(string RunId, IReadOnlyList<JournalRow> Rows, JournalHead? Head, IndexEntry? Index)
{
    /// <summary>True when nothing in the database names the run.</summary>
    public bool IsAbsent => Rows.Count == 0 && Head is null && Index is null;
}

/// <summary>The reads of an audit: runs' journals, heads and index rows together, run ids to page through, rows to export.</summary>
internal sealed class AuditStore(SpineDatabase database)
{
    /// <summary>
    /// Reads the journal, head and index row of each run in one repeatable-read snapshot, so that an append
    /// committing meanwhile cannot make a run's head look longer than its journal.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, RunRecord>> ReadAsync(IReadOnlyList<string> runIds, CancellationToken cancellationToken = default)
    {
        var ids = runIds.Distinct(StringComparer.Ordinal).ToArray();
        var rows = ids.ToDictionary(id => id, _ => new List<JournalRow>(), StringComparer.Ordinal);
        var heads = new Dictionary<string, JournalHead>(StringComparer.Ordinal);
        var index = new Dictionary<string, IndexEntry>(StringComparer.Ordinal);
        try
        {
            await using var connection = await database.DataSource.OpenConnectionAsync(cancellationToken);
            await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken);
            await using var batch = new NpgsqlBatch(connection, transaction);
            batch.BatchCommands.Add(Command($"SELECT {JournalStore.RowColumns} FROM spine_journal WHERE run_id = ANY(@ids) ORDER BY run_id, seq", ids));
            batch.BatchCommands.Add(Command("SELECT run_id, seq, mac, legacy_rows FROM spine_journal_heads WHERE run_id = ANY(@ids)", ids));
            batch.BatchCommands.Add(Command("SELECT run_id, status, journal_seq, result FROM spine_runs WHERE run_id = ANY(@ids)", ids));
            await using (var reader = await batch.ExecuteReaderAsync(cancellationToken))
            {
                while (await reader.ReadAsync(cancellationToken))
                {
                    var row = JournalStore.ReadRow(reader);
                    rows[row.RunId].Add(row);
                }

                await reader.NextResultAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    heads[reader.GetString(0)] = new JournalHead(reader.GetInt32(1), reader.GetFieldValue<byte[]>(2), reader.GetInt32(3));
                }

                await reader.NextResultAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    index[reader.GetString(0)] = new IndexEntry((RunStatus)reader.GetInt16(1), reader.GetInt32(2), reader.IsDBNull(3) ? null : reader.GetString(3));
                }
            }

            await transaction.CommitAsync(cancellationToken);
        }
        catch (Exception e) when (SpineDatabase.Classify(e, "journal audit read") is { } typed)
        {
            throw typed;
        }

        return ids.ToDictionary(
            id => id,
            id => new RunRecord(id, rows[id], heads.GetValueOrDefault(id), index.GetValueOrDefault(id)),
            StringComparer.Ordinal);
    }

    /// <summary>
    /// One run's record, in one statement (so one snapshot and one round trip: this is every activation's read).
    /// The head and index columns repeat on each journal row; a run without rows still yields one row.
    /// </summary>
    public async Task<RunRecord> ReadAsync(string runId, CancellationToken cancellationToken = default)
    {
        var sql = $"""
            SELECT h.seq, h.mac, h.legacy_rows, r.status, r.journal_seq, r.result, {string.Join(", ", JournalStore.RowColumns.Split(", ").Select(c => "j." + c))}
            FROM (SELECT @run_id::text AS run_id) k
            LEFT JOIN spine_journal_heads h ON h.run_id = k.run_id
            LEFT JOIN spine_runs r ON r.run_id = k.run_id
            LEFT JOIN spine_journal j ON j.run_id = k.run_id
            ORDER BY j.seq
            """;
        try
        {
            await using var command = database.DataSource.CreateCommand(sql);
            command.Parameters.AddWithValue("run_id", runId);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            var rows = new List<JournalRow>();
            JournalHead? head = null;
            IndexEntry? index = null;
            while (await reader.ReadAsync(cancellationToken))
            {
                head ??= reader.IsDBNull(0) ? null : new JournalHead(reader.GetInt32(0), reader.GetFieldValue<byte[]>(1), reader.GetInt32(2));
                index ??= reader.IsDBNull(3) ? null : new IndexEntry((RunStatus)reader.GetInt16(3), reader.GetInt32(4), reader.IsDBNull(5) ? null : reader.GetString(5));
                if (!reader.IsDBNull(6))
                {
                    rows.Add(JournalStore.ReadRow(reader, 6));
                }
            }

            return new RunRecord(runId, rows, head, index);
        }
        catch (Exception e) when (SpineDatabase.Classify(e, "journal read") is { } typed)
        {
            throw typed;
        }
    }

    /// <summary>A page of the run ids the index or the heads name, in order, after <paramref name="after"/>.</summary>
    public async Task<IReadOnlyList<string>> ListRunIdsAsync(string? after, int limit, CancellationToken cancellationToken = default)
    {
        const string sql = """
            SELECT run_id FROM (
                (SELECT run_id FROM spine_runs WHERE @after IS NULL OR run_id > @after ORDER BY run_id LIMIT @limit)
                UNION
                (SELECT run_id FROM spine_journal_heads WHERE @after IS NULL OR run_id > @after ORDER BY run_id LIMIT @limit)
            ) ids ORDER BY run_id LIMIT @limit
            """;
        try
        {
            await using var command = database.DataSource.CreateCommand(sql);
            command.Parameters.Add(new NpgsqlParameter<string?>("after", NpgsqlDbType.Text) { TypedValue = after });
            command.Parameters.AddWithValue("limit", limit);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            var page = new List<string>();
            while (await reader.ReadAsync(cancellationToken))
            {
                page.Add(reader.GetString(0));
            }

            return page;
        }
        catch (Exception e) when (SpineDatabase.Classify(e, "journal audit listing") is { } typed)
        {
            throw typed;
        }
    }

    /// <summary>Runs that have journal rows but neither a head nor an index row: rows written around the journal's trigger.</summary>
    public async Task<IReadOnlyList<string>> ListUnanchoredAsync(int limit, CancellationToken cancellationToken = default)
    {
        const string sql = """
            SELECT DISTINCT j.run_id FROM spine_journal j
            WHERE NOT EXISTS (SELECT 1 FROM spine_journal_heads h WHERE h.run_id = j.run_id)
              AND NOT EXISTS (SELECT 1 FROM spine_runs r WHERE r.run_id = j.run_id)
            LIMIT @limit
            """;
        try
        {
            await using var command = database.DataSource.CreateCommand(sql);
            command.Parameters.AddWithValue("limit", limit);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            var found = new List<string>();
            while (await reader.ReadAsync(cancellationToken))
            {
                found.Add(reader.GetString(0));
            }

            return found;
        }
        catch (Exception e) when (SpineDatabase.Classify(e, "journal audit listing") is { } typed)
        {
            throw typed;
        }
    }

    /// <summary>One page of rows to export.</summary>
    public async Task<IReadOnlyList<JournalRow>> ExportAsync(AuditExportQuery query, CancellationToken cancellationToken = default)
    {
        var sql = $"""
            SELECT {JournalStore.RowColumns} FROM spine_journal
            WHERE (@run_id IS NULL OR run_id = @run_id)
              AND (@since IS NULL OR recorded_at >= @since)
              AND (run_id, seq) > (@after_run, @after_seq)
            ORDER BY run_id, seq
            LIMIT @limit
            """;
        try
        {
            await using var command = database.DataSource.CreateCommand(sql);
            command.Parameters.Add(new NpgsqlParameter<string?>("run_id", NpgsqlDbType.Text) { TypedValue = query.RunId });
            command.Parameters.Add(new NpgsqlParameter<DateTime?>("since", NpgsqlDbType.TimestampTz) { TypedValue = query.Since?.UtcDateTime });
            command.Parameters.Add(new NpgsqlParameter<string>("after_run", NpgsqlDbType.Text) { TypedValue = query.AfterRunId ?? "" });
            command.Parameters.AddWithValue("after_seq", query.AfterSeq);
            command.Parameters.AddWithValue("limit", Math.Clamp(query.Limit, 1, 10_000));
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            var rows = new List<JournalRow>();
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add(JournalStore.ReadRow(reader));
            }

            return rows;
        }
        catch (Exception e) when (SpineDatabase.Classify(e, "journal export") is { } typed)
        {
            throw typed;
        }
    }

    private static NpgsqlBatchCommand Command(string sql, string[] ids)
    {
        var command = new NpgsqlBatchCommand(sql);
        command.Parameters.Add(new NpgsqlParameter<string[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = ids });
        return command;
    }
}
