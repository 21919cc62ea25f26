using Spine.Audit;
using Spine.Errors;
using Spine.Runs;
using Spine.Storage;

namespace Spine.Journal;

/// <summary>
/// The journal of one run as one activation holds it: the rows read back and appended (with the indexes
/// replay reads), the control state they fold to, and every write of the run. Writes go one at a time,
/// so two writes of one run never share (or reorder in) a batch; each row is hash-chained to the one before.
/// </summary>
internal sealed class RunJournal(string runId, JournalWriter writer, JournalStore store, JournalAudit audit, StorageRetry storage, TimeProvider time, CancellationToken stopping, Action stepAside)
{
    private readonly SemaphoreSlim _lock = new(1, 1);

    public RunHistory History { get; } = new();

    /// <summary>Pulsed after every write (and status change) of the run.</summary>
    public StatusWatch Changes { get; } = new();

    /// <summary>Rows waiting to be journaled in front of their step's next row (see <see cref="Defer"/>).</summary>
    private readonly Dictionary<int, List<PendingRow>> _deferred = [];

    /// <summary>
    /// Journals <paramref name="row"/> in front of the next row of its step, in the same commit, instead of in a commit
    /// of its own: for a record that only means something with what follows it (a model call's budget reservation,
    /// which the budget grain holds by key whether or not the journal says so). Lost with the activation when no
    /// row of the step follows.
    /// </summary>
    public void Defer(PendingRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        var step = row.Step ?? throw new ArgumentException("Only a step's row can wait for the step's next row.", nameof(row));
        if (!_deferred.TryGetValue(step, out var rows))
        {
            _deferred[step] = rows = [];
        }

        rows.Add(row);
    }

    /// <summary>The run's control state; null until the run's first row is durable (or was read back).</summary>
    public RunState? State { get; private set; }

    /// <summary>
    /// Why the run may never execute again, when what the database holds of it does not verify (see
    /// <see cref="JournalAudit"/>); null when it verifies.
    /// </summary>
    public JournalVerification? Tampered { get; private set; }

    /// <summary>
    /// Reads the stored journal with its head anchor and index row, verifies them and folds the rows; false when
    /// nothing names the run. A run that does not verify loads as <see cref="Tampered"/>, its state (when it has
    /// rows) <see cref="RunStatus.Quarantined"/>.
    /// </summary>
    public async Task<bool> LoadAsync(CancellationToken cancellationToken)
    {
        var (record, check) = await storage.ExecuteAsync(token => audit.ReadForActivationAsync(runId, token), cancellationToken);
        if (check.UnknownKeyId is { } keyId)
        {
            // A silo that lacks a key the others sign with (a rotation rolled out in the wrong order) must not
            // quarantine healthy runs: the activation fails, and succeeds on a silo, or later, with the key.
            throw new AuditKeyUnknownException(runId, keyId);
        }

        foreach (var row in record.Rows)
        {
            History.Add(row);
            State = RunState.Fold(State, row);
        }

        if (!check.Intact)
        {
            Tampered = check;
            if (State is { } state)
            {
                state.Status = RunStatus.Quarantined;
                var at = check.FirstBadSeq is { } seq ? $"row {seq}: " : "";
                state.Error = new RunError("journal_tampered", RunPayloads.Clean($"{at}{check.Problem}") ?? "the journal does not verify");
            }
        }

        return !record.IsAbsent;
    }

    /// <summary>Writes the quarantine into the index row, unless the index shows the run finished (final, so it stays).</summary>
    public Task QuarantineAsync()
    {
        var state = State ?? throw new InvalidOperationException($"Run {runId} has no rows to quarantine.");
        var index = state.ToRunRow(runId) with { UpdatedAt = JournalHash.ToStoredPrecision(time.GetUtcNow()), JournalSeq = History.Rows.Count };
        return storage.ExecuteAsync(_ => writer.UpdateRunAsync(index), stopping);
    }

    /// <summary>The status of the last index row this activation committed (null before its first).</summary>
    public RunStatus? IndexedStatus { get; private set; }

    /// <summary>The wake-up time the last index row this activation committed gave the recovery sweep (<see cref="RunRow.SweepAt"/>).</summary>
    public DateTimeOffset? IndexedWakeAt { get; private set; }

    /// <summary>
    /// When the run's earliest pending wait is due, read as each index row is written: the row carries it, so that
    /// a status that says the run waits and the time the sweep must bring it back by commit together.
    /// </summary>
    public Func<DateTimeOffset?>? WakeSource { get; set; }

    /// <summary>Throws when the run is quarantined.</summary>
    /// <exception cref="JournalTamperedException">The run's journal does not verify.</exception>
    public void ThrowIfTampered()
    {
        if (Tampered is { } check)
        {
            throw new JournalTamperedException(runId, check.FirstBadSeq, check.Problem ?? "the journal does not verify");
        }
    }

    /// <summary>Appends one row (and optionally the index row) and waits for it to be durable.</summary>
    public async Task<JournalRow> AppendAsync(JournalKind kind, int? step, string name, bool ok, string? payload, RunRow? run = null, int? attempt = null) =>
        (await WriteAsync([new PendingRow(kind, step, name, ok, payload, attempt)], run))[0];

    /// <summary>
    /// Commits <paramref name="rows"/> with the index row of the run in <paramref name="status"/> (and, for a
    /// finished run, its <paramref name="end"/>), and only then makes the state say so, together with what
    /// <paramref name="apply"/> changes: readers never see a status whose rows are not durable.
    /// </summary>
    public async Task TransitionAsync(IReadOnlyList<PendingRow> rows, RunStatus status, RunEnd? end = null, Action<RunState>? apply = null)
    {
        var state = State ?? throw new InvalidOperationException($"Run {runId} has no journal to change.");
        var now = JournalHash.ToStoredPrecision(time.GetUtcNow());
        var index = state.ToRunRow(runId) with { Status = status, UpdatedAt = now };
        if (end is not null)
        {
            index = index with
            {
                Result = end.Result,
                ErrorKind = end.Error?.Kind,
                ErrorMessage = RunPayloads.Clean(end.Error?.Message),
                ErrorStep = end.Error?.Step,
                ErrorStepName = RunPayloads.Clean(end.Error?.StepName),
            };
        }

        await WriteAsync(rows, index);
        state.Status = status;
        state.UpdatedAt = now;
        if (end is not null)
        {
            state.Result = end.Result;
            state.Error = end.Error;
        }

        apply?.Invoke(state);
        Changes.Pulse();
    }

    /// <summary>Commits the first rows of a new run with its index row; the state exists from then on.</summary>
    public async Task StartAsync(RunState state, IReadOnlyList<PendingRow> rows, CancellationToken deadline)
    {
        await WriteAsync(rows, state.ToRunRow(runId), deadline);
        State = state;
    }

    /// <summary>
    /// Appends rows and/or the index row in one commit: all of them are durable, or none. An outage is
    /// ridden out in place; a write whose outcome stays unknown ends the activation (the journal stays the
    /// truth, and the next activation reads it afresh).
    /// </summary>
    public async Task<IReadOnlyList<JournalRow>> WriteAsync(IReadOnlyList<PendingRow> pending, RunRow? run, CancellationToken deadline = default)
    {
        // Nothing is ever written to a run that does not verify, whatever path asks: its rows would vouch for a
        // history someone changed. (Its quarantine is written by QuarantineAsync.)
        ThrowIfTampered();
        await _lock.WaitAsync();
        List<(int Step, List<PendingRow> Rows)> taken = [];
        var committed = false;
        try
        {
            // Taken out now, so that a row deferred while this write is in flight waits for the next one.
            (pending, taken, var deferredAt) = TakeDeferred(pending);
            var rows = new List<JournalRow>(pending.Count);
            var previous = History.Rows.Count == 0 ? JournalHash.Genesis : History.Rows[^1].Hash;
            var seq = History.Rows.Count;
            foreach (var p in pending)
            {
                var at = JournalHash.ToStoredPrecision(time.GetUtcNow());
                var name = RunPayloads.Clean(p.Name);
                var hash = JournalHash.Compute(audit.Keys.Signing, previous, runId, seq, p.Kind, p.Step, name, p.Ok, p.Payload, at, p.Attempt);
                rows.Add(new JournalRow(runId, seq, p.Kind, p.Step, name, p.Ok, p.Payload, at, previous, hash, p.Attempt, audit.Keys.Signing.Id));
                previous = hash;
                seq++;
            }

            // The index row says how long the journal is with these rows: that, not a clock, orders index writes.
            run = run is null ? null : run with { JournalSeq = seq, WakeAt = WakeSource?.Invoke() };
            try
            {
                using var stop = deadline.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(stopping, deadline) : null;
                await storage.ExecuteAsync(_ => writer.AppendAsync(rows, run), stop?.Token ?? stopping);
            }
            catch (JournalConflictException) when (rows.Count > 0)
            {
                // Either a try whose acknowledgement was lost did commit (then the stored rows are these very
                // rows, hashes and all), or another activation wrote here first and this one must stop.
                if (!await LandedAsync(rows))
                {
                    stepAside();
                    throw;
                }
            }
            catch (JournalTamperedException e)
            {
                // The stored journal is not the one this activation holds (cut, or finished elsewhere): nothing more
                // is written or run here, and the next activation reads and verifies it.
                Tampered = new JournalVerification(runId, History.Rows.Count, false, e.FirstBadSeq, e.Problem);
                stepAside();
                throw;
            }
            catch (StorageUnavailableException e) when (!e.IsTransient)
            {
                // Refused for good: the transaction did not commit, so this activation's view is still the journal.
                throw;
            }
            catch (Exception e) when (e is StorageUnavailableException or OperationCanceledException)
            {
                stepAside();
                throw;
            }

            // Durable: the deferred rows among them are never restored from here on.
            committed = true;
            foreach (var row in rows)
            {
                History.Add(row);
                State?.Observe(row);
            }

            Changes.Pulse();
            if (run is not null)
            {
                // Writes are serialized by the lock, so this is the status of the index row that committed last.
                IndexedStatus = run.Status;
                IndexedWakeAt = run.SweepAt;
            }

            // The caller gets the rows it asked for (the deferred ones went in front of them).
            return deferredAt is null ? rows : [.. rows.Where((_, i) => !deferredAt.Contains(i))];
        }
        finally
        {
            if (!committed)
            {
                // Not journaled: they wait for the step's next row again, in front of any deferred meanwhile.
                foreach (var (step, rows) in taken)
                {
                    if (_deferred.TryGetValue(step, out var later))
                    {
                        rows.AddRange(later);
                    }

                    _deferred[step] = rows;
                }
            }

            _lock.Release();
        }
    }

    /// <summary>
    /// <paramref name="pending"/> with each step's deferred rows in front of the step's first row (taken out of the
    /// deferred ones), the rows taken by step, and where they are in the result.
    /// </summary>
    private (IReadOnlyList<PendingRow> Rows, List<(int Step, List<PendingRow> Rows)> Taken, HashSet<int>? DeferredAt) TakeDeferred(IReadOnlyList<PendingRow> pending)
    {
        var taken = new List<(int, List<PendingRow>)>();
        if (_deferred.Count == 0)
        {
            return (pending, taken, null);
        }

        List<PendingRow>? rows = null;
        HashSet<int>? at = null;
        for (var i = 0; i < pending.Count; i++)
        {
            if (pending[i].Step is { } step && _deferred.Remove(step, out var deferred))
            {
                rows ??= [.. pending.Take(i)];
                at ??= [];
                foreach (var row in deferred)
                {
                    at.Add(rows.Count);
                    rows.Add(row);
                }

                taken.Add((step, deferred));
            }

            rows?.Add(pending[i]);
        }

        return rows is null ? (pending, taken, null) : (rows, taken, at);
    }

    /// <summary>Whether <paramref name="rows"/> are in the stored journal exactly as this activation wrote them.</summary>
    private async Task<bool> LandedAsync(IReadOnlyList<JournalRow> rows)
    {
        var stored = await storage.ExecuteAsync(token => store.ReadAsync(runId, token), stopping);
        return rows.All(r => r.Seq < stored.Count && stored[r.Seq].Seq == r.Seq && stored[r.Seq].Hash.AsSpan().SequenceEqual(r.Hash));
    }
}

/// <summary>A row to append: what the run says; the journal adds sequence, time and hash.</summary>
internal sealed record PendingRow(JournalKind Kind, int? Step, string Name, bool Ok, string? Payload, int? Attempt);

/// <summary>How a finished run ended: its result, or its error.</summary>
internal sealed record RunEnd(string? Result, RunError? Error);
