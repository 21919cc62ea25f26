using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Spine.Errors;
using Spine.Hosting;
using Spine.Storage;

namespace Spine.Journal;

/// <summary>
/// Group commit for journal appends. Run grains on this silo hand in their rows; a few writer loops
/// take whatever has queued up while the previous commit was in flight and commit it as one
/// transaction of two multi-row statements. Each caller still awaits its own row's durability.
/// </summary>
public sealed partial class JournalWriter : IAsyncDisposable
{
    private const string InsertJournalSql = """
        INSERT INTO spine_journal (run_id, seq, kind, step, name, ok, payload, recorded_at, prev_hash, hash, attempt, key_id)
        SELECT * FROM unnest(@run_id, @seq, @kind, @step, @name, @ok, @payload, @recorded_at, @prev_hash, @hash, @attempt, @key_id)
        """;

    private const string UpsertRunSql = """
        INSERT INTO spine_runs (run_id, workflow_type, workflow_version, account_id, idempotency_key, status,
                                result, error_kind, error_message, created_at, updated_at, error_step, error_step_name, origin_run_id, journal_seq, wake_at)
        SELECT * FROM unnest(@run_id, @workflow_type, @workflow_version, @account_id, @idempotency_key, @status,
                             @result, @error_kind, @error_message, @created_at, @updated_at, @error_step, @error_step_name, @origin_run_id, @journal_seq,
                             @wake_at)
        ON CONFLICT (run_id) DO UPDATE
        SET status = EXCLUDED.status, result = EXCLUDED.result, error_kind = EXCLUDED.error_kind,
            error_message = EXCLUDED.error_message, updated_at = GREATEST(EXCLUDED.updated_at, spine_runs.updated_at),
            error_step = EXCLUDED.error_step, error_step_name = EXCLUDED.error_step_name,
            journal_seq = GREATEST(EXCLUDED.journal_seq, spine_runs.journal_seq), wake_at = EXCLUDED.wake_at
        WHERE CASE
            -- A finished (or quarantined) status is final; the one change after it is discarding a dead-lettered run.
            WHEN spine_runs.status IN (3, 4, 5, 9, 10) THEN false
            WHEN spine_runs.status = 8 THEN EXCLUDED.status = 9
            -- A finished status always wins over an unfinished one: the journal that finished is the longest.
            WHEN EXCLUDED.status IN (3, 4, 5, 8, 9, 10) THEN true
            -- Otherwise the journal orders writes: fewer rows is stale; at the same length, the later write.
            ELSE EXCLUDED.journal_seq > spine_runs.journal_seq
                 OR (EXCLUDED.journal_seq = spine_runs.journal_seq AND EXCLUDED.updated_at >= spine_runs.updated_at)
        END
        """;

    /// <summary>The SQLSTATE the journal's trigger raises for rows that do not continue their run's head (infra/postgres/0006_audit_chain.sql).</summary>
    internal const string HeadMismatch = "SPJ01";

    private readonly SpineDatabase _database;
    private readonly ILogger<JournalWriter> _logger;
    private readonly int _maxBatch;
    private readonly Channel<PendingWrite> _queue = Channel.CreateUnbounded<PendingWrite>(new UnboundedChannelOptions { SingleReader = false });
    private readonly Task[] _loops;

    /// <summary>Starts the writer loops.</summary>
    public JournalWriter(SpineDatabase database, IOptions<SpineOptions> options, ILogger<JournalWriter> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _database = database;
        _logger = logger;
        _maxBatch = options.Value.JournalMaxBatch;
        _loops = Enumerable.Range(0, options.Value.JournalWriters).Select(_ => Task.Run(WriteLoopAsync)).ToArray();
    }

    /// <summary>
    /// Appends a journal row and/or upserts the run's index row in one transaction, committed together
    /// with other runs' writes. Completes once durable.
    /// </summary>
    /// <exception cref="JournalConflictException">The row's (run, seq) already exists.</exception>
    /// <exception cref="StorageUnavailableException">PostgreSQL could not be reached or refused the write.</exception>
    public Task AppendAsync(JournalRow? row, RunRow? run) =>
        AppendAsync(row is null ? [] : [row], run);

    /// <summary>Upserts a run's index row alone (a status change without a journal event).</summary>
    public Task UpdateRunAsync(RunRow run) => AppendAsync([], run);

    /// <summary>Appends several rows of one run (and/or its index row) atomically, in one commit.</summary>
    public Task AppendAsync(IReadOnlyList<JournalRow> rows, RunRow? run)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count == 0 && run is null)
        {
            return Task.CompletedTask;
        }

        var pending = new PendingWrite(rows, run);
        if (!_queue.Writer.TryWrite(pending))
        {
            return Task.FromException(new StorageUnavailableException("journal append", "the journal writer is shut down", transient: false));
        }

        return pending.Completion.Task;
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await Task.WhenAll(_loops);
    }

    private async Task WriteLoopAsync()
    {
        var batch = new List<PendingWrite>(_maxBatch);
        var reader = _queue.Reader;
        while (await reader.WaitToReadAsync())
        {
            batch.Clear();
            while (batch.Count < _maxBatch && reader.TryRead(out var item))
            {
                batch.Add(item);
            }

            if (batch.Count == 0)
            {
                continue;
            }

            await CommitOrSplitAsync(batch);
        }
    }

    /// <summary>
    /// Commits a batch; when that fails for a reason other than an unreachable server, commits each half on
    /// its own, so one write the server or the driver refuses fails alone and never takes the others with it.
    /// A connection failure fails the whole batch at once: every caller retries its own write.
    /// </summary>
    private async Task CommitOrSplitAsync(IReadOnlyList<PendingWrite> items)
    {
        Exception failure;
        try
        {
            await CommitAsync(items);
            foreach (var item in items)
            {
                item.Completion.TrySetResult();
            }

            return;
        }
        catch (Exception e)
        {
            failure = e;
        }

        if (items.Count == 1 || SpineDatabase.IsTransient(failure))
        {
            foreach (var item in items)
            {
                item.Completion.TrySetException(Map(failure, item));
            }

            return;
        }

        var half = items.Count / 2;
        await CommitOrSplitAsync(items.Take(half).ToList());
        await CommitOrSplitAsync(items.Skip(half).ToList());
    }

    private Exception Map(Exception e, PendingWrite item)
    {
        if (e is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } && item.Rows.Count > 0)
        {
            return new JournalConflictException(item.Rows[0].RunId, item.Rows[0].Seq);
        }

        if (e is PostgresException { SqlState: HeadMismatch } refused && item.Rows.Count > 0)
        {
            // The journal's trigger refused rows that do not continue the run's head: it was cut or is finished.
            LogCommitRefused(_logger, e, item.Rows[0].RunId);
            return new JournalTamperedException(item.Rows[0].RunId, item.Rows[0].Seq, refused.MessageText);
        }

        var runId = item.Rows.Count > 0 ? item.Rows[0].RunId : item.Run?.RunId;
        if (SpineDatabase.IsTransient(e))
        {
            LogCommitFailedTransiently(_logger, e.Message, runId);
        }
        else
        {
            LogCommitRefused(_logger, e, runId);
        }

        // Every failure leaves here typed: whatever the driver threw, it is a storage failure, never a step's.
        return SpineDatabase.Classify(e, "journal append")
            ?? new StorageUnavailableException("journal append", $"the write was refused: {e.GetType().Name}: {e.Message}", e, transient: false);
    }

    private async Task CommitAsync(IReadOnlyList<PendingWrite> items)
    {
        await using var connection = await _database.DataSource.OpenConnectionAsync();
        await using var batch = new NpgsqlBatch(connection);

        var rows = items.SelectMany(i => i.Rows).ToArray();
        if (rows.Length > 0)
        {
            var command = new NpgsqlBatchCommand(InsertJournalSql);
            command.Parameters.Add(Array("run_id", NpgsqlDbType.Text, rows.Select(r => r.RunId).ToArray()));
            command.Parameters.Add(Array("seq", NpgsqlDbType.Integer, rows.Select(r => r.Seq).ToArray()));
            command.Parameters.Add(Array("kind", NpgsqlDbType.Smallint, rows.Select(r => (short)r.Kind).ToArray()));
            command.Parameters.Add(Array("step", NpgsqlDbType.Integer, rows.Select(r => r.Step).ToArray()));
            command.Parameters.Add(Array("name", NpgsqlDbType.Text, rows.Select(r => r.Name).ToArray()));
            command.Parameters.Add(Array("ok", NpgsqlDbType.Boolean, rows.Select(r => r.Ok).ToArray()));
            command.Parameters.Add(Array("payload", NpgsqlDbType.Text, rows.Select(r => r.Payload).ToArray()));
            command.Parameters.Add(Array("recorded_at", NpgsqlDbType.TimestampTz, rows.Select(r => r.RecordedAt.UtcDateTime).ToArray()));
            command.Parameters.Add(Array("prev_hash", NpgsqlDbType.Bytea, rows.Select(r => r.PrevHash).ToArray()));
            command.Parameters.Add(Array("hash", NpgsqlDbType.Bytea, rows.Select(r => r.Hash).ToArray()));
            command.Parameters.Add(Array("attempt", NpgsqlDbType.Integer, rows.Select(r => r.Attempt).ToArray()));
            command.Parameters.Add(Array("key_id", NpgsqlDbType.Text, rows.Select(r => r.KeyId).ToArray()));
            batch.BatchCommands.Add(command);
        }

        var runs = items.Where(i => i.Run is not null).Select(i => i.Run!).ToArray();
        if (runs.Length > 0)
        {
            var command = new NpgsqlBatchCommand(UpsertRunSql);
            command.Parameters.Add(Array("run_id", NpgsqlDbType.Text, runs.Select(r => r.RunId).ToArray()));
            command.Parameters.Add(Array("workflow_type", NpgsqlDbType.Text, runs.Select(r => r.WorkflowType).ToArray()));
            command.Parameters.Add(Array("workflow_version", NpgsqlDbType.Integer, runs.Select(r => r.WorkflowVersion).ToArray()));
            command.Parameters.Add(Array("account_id", NpgsqlDbType.Text, runs.Select(r => r.AccountId).ToArray()));
            command.Parameters.Add(Array("idempotency_key", NpgsqlDbType.Text, runs.Select(r => r.IdempotencyKey).ToArray()));
            command.Parameters.Add(Array("status", NpgsqlDbType.Smallint, runs.Select(r => (short)r.Status).ToArray()));
            command.Parameters.Add(Array("result", NpgsqlDbType.Text, runs.Select(r => r.Result).ToArray()));
            command.Parameters.Add(Array("error_kind", NpgsqlDbType.Text, runs.Select(r => r.ErrorKind).ToArray()));
            command.Parameters.Add(Array("error_message", NpgsqlDbType.Text, runs.Select(r => r.ErrorMessage).ToArray()));
            command.Parameters.Add(Array("created_at", NpgsqlDbType.TimestampTz, runs.Select(r => r.CreatedAt.UtcDateTime).ToArray()));
            command.Parameters.Add(Array("updated_at", NpgsqlDbType.TimestampTz, runs.Select(r => r.UpdatedAt.UtcDateTime).ToArray()));
            command.Parameters.Add(Array("error_step", NpgsqlDbType.Integer, runs.Select(r => r.ErrorStep).ToArray()));
            command.Parameters.Add(Array("error_step_name", NpgsqlDbType.Text, runs.Select(r => r.ErrorStepName).ToArray()));
            command.Parameters.Add(Array("origin_run_id", NpgsqlDbType.Text, runs.Select(r => r.OriginRunId).ToArray()));
            command.Parameters.Add(Array("journal_seq", NpgsqlDbType.Integer, runs.Select(r => r.JournalSeq).ToArray()));
            command.Parameters.Add(Array("wake_at", NpgsqlDbType.TimestampTz, runs.Select(r => r.SweepAt?.UtcDateTime).ToArray()));
            batch.BatchCommands.Add(command);
        }

        // A batch of several statements runs in one implicit transaction (a single Sync): all or nothing.
        await batch.ExecuteNonQueryAsync();
    }

    private static NpgsqlParameter Array<T>(string name, NpgsqlDbType elementType, T[] values) =>
        new(name, NpgsqlDbType.Array | elementType) { Value = values };

    [LoggerMessage(Level = LogLevel.Debug, Message = "Journal commit for run {RunId} failed transiently ({Detail}); the run retries it")]
    private static partial void LogCommitFailedTransiently(ILogger logger, string detail, string? runId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Journal commit refused for run {RunId}")]
    private static partial void LogCommitRefused(ILogger logger, Exception exception, string? runId);

    private sealed class PendingWrite(IReadOnlyList<JournalRow> rows, RunRow? run)
    {
        public IReadOnlyList<JournalRow> Rows { get; } = rows;

        public RunRow? Run { get; } = run;

        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
