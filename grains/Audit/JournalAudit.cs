using Spine.Errors;
using Spine.Journal;
using Spine.Runs;

namespace Spine.Audit;

/// <summary>
/// Verifies runs as an auditor would: each row's keyed hash and link (<see cref="JournalHash"/>), the journal's
/// length and last hash against the head anchor its trigger keeps, and the index row against the journal (a
/// finished status must be the one the journal ends with). See docs/audit.md.
/// </summary>
public sealed class JournalAudit
{
    private const int Page = 200;

    private readonly AuditStore _store;

    /// <summary>Created by the container.</summary>
    public JournalAudit(Storage.SpineDatabase database, AuditKeyRing keys)
    {
        _store = new AuditStore(database);
        Keys = keys;
    }

    /// <summary>The keys rows are signed and verified with.</summary>
    public AuditKeyRing Keys { get; }

    /// <summary>Verifies one run.</summary>
    /// <exception cref="RunNotFoundException">Nothing in the database names the run.</exception>
    public async Task<JournalVerification> VerifyAsync(string runId, CancellationToken cancellationToken = default)
    {
        var record = await _store.ReadAsync(runId, cancellationToken);
        if (record.IsAbsent)
        {
            throw new RunNotFoundException(runId);
        }

        return Check(record);
    }

    /// <summary>Verifies every run the database names.</summary>
    public async Task<AuditReport> VerifyAllAsync(int maxReported, CancellationToken cancellationToken = default)
    {
        var broken = new List<JournalVerification>();
        var brokenRuns = 0;
        var runs = 0;
        long rows = 0;
        void Report(JournalVerification check)
        {
            if (!check.Intact && ++brokenRuns <= maxReported)
            {
                broken.Add(check);
            }
        }

        string? after = null;
        while (true)
        {
            var ids = await _store.ListRunIdsAsync(after, Page, cancellationToken);
            if (ids.Count == 0)
            {
                break;
            }

            var records = await _store.ReadAsync(ids, cancellationToken);
            foreach (var id in ids)
            {
                var record = records[id];
                runs++;
                rows += record.Rows.Count;
                Report(Check(record));
            }

            after = ids[^1];
        }

        // Rows that neither a head nor an index row names were written around the journal's trigger.
        foreach (var id in await _store.ListUnanchoredAsync(Math.Max(maxReported, 1), cancellationToken))
        {
            var record = await _store.ReadAsync(id, cancellationToken);
            runs++;
            rows += record.Rows.Count;
            Report(Check(record));
        }

        return new AuditReport(runs, rows, broken, brokenRuns);
    }

    /// <summary>One page of rows to export.</summary>
    public async Task<IReadOnlyList<AuditEntry>> ExportAsync(AuditExportQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        var rows = await _store.ExportAsync(query, cancellationToken);
        return rows.Select(r => r.ToAuditEntry()).ToList();
    }

    /// <summary>Reads a run for its activation: its rows, and whether they verify.</summary>
    internal async Task<(RunRecord Record, JournalVerification Check)> ReadForActivationAsync(string runId, CancellationToken cancellationToken)
    {
        var record = await _store.ReadAsync(runId, cancellationToken);
        return (record, record.IsAbsent ? new JournalVerification(runId, 0, true) : Check(record));
    }

    /// <summary>Checks what the database holds of a run.</summary>
    internal JournalVerification Check(RunRecord record)
    {
        var runId = record.RunId;
        var rows = record.Rows;
        if (rows.Count == 0)
        {
            var says = record.Head is { } h ? $"its head anchor says it has {h.Seq + 1} rows" : $"the index lists it as {record.Index!.Status}";
            return Broken(record, 0, $"the run's journal is gone: {says}");
        }

        var chain = JournalHash.Verify(runId, rows, Keys, record.Head?.LegacyRows ?? 0);
        if (!chain.Intact)
        {
            return chain;
        }

        if (record.Head is not { } head)
        {
            return Broken(record, 0, "the run has no head anchor: its rows were not appended through the journal");
        }

        if (head.Seq + 1 > rows.Count)
        {
            return Broken(record, rows.Count, $"the journal ends at row {rows.Count - 1} but its head anchor is at row {head.Seq}: rows were deleted");
        }

        if (head.Seq + 1 < rows.Count)
        {
            return Broken(record, head.Seq + 1, $"rows after the head anchor (row {head.Seq}) were not appended through the journal");
        }

        if (!System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(head.Mac, rows[^1].Hash))
        {
            return Broken(record, rows.Count - 1, "the last row's hash is not the one its head anchor recorded");
        }

        if (record.Index is not { } index)
        {
            return Broken(record, null, "the run has no index row");
        }

        if (index.Status == RunStatus.Quarantined)
        {
            // Once quarantined, always: a cause that went away (a key configured later) does not release it.
            return Broken(record, null, "the run is quarantined (its journal did not verify when it last activated)");
        }

        if (index.JournalSeq > rows.Count)
        {
            return Broken(record, rows.Count, $"the index was written when the journal had {index.JournalSeq} rows; it has {rows.Count}");
        }

        RunState? state = null;
        foreach (var row in rows)
        {
            state = RunState.Fold(state, row);
        }

        var journalStatus = state?.Status ?? RunStatus.Pending;
        var finished = journalStatus.IsTerminal() && journalStatus != RunStatus.Quarantined;
        var indexFinished = index.Status.IsTerminal() && index.Status != RunStatus.Quarantined;
        if ((finished || indexFinished) && journalStatus != index.Status)
        {
            return Broken(record, null, $"the index says the run is {index.Status}; its journal says {journalStatus}");
        }

        if (finished && !string.Equals(index.Result, state!.Result, StringComparison.Ordinal))
        {
            return Broken(record, null, "the index's result is not the one the journal records");
        }

        return chain;
    }

    private static JournalVerification Broken(RunRecord record, int? seq, string problem) =>
        new(record.RunId, record.Rows.Count, false, seq, problem);
}
