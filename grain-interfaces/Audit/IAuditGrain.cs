using Spine.Runs;

namespace Spine.Audit;

/// <summary>
/// Checks and exports the journal, the audit log of every run. Answered on whichever silo takes the call: the
/// silos hold the journal's key, the database does not.
/// </summary>
[Alias("spine.IAuditGrain")]
public interface IAuditGrain : IGrainWithIntegerKey
{
    /// <summary>Verifies one run: its keyed chain, its head anchor and its index row agree.</summary>
    /// <exception cref="Spine.Errors.RunNotFoundException">Nothing in the database names the run.</exception>
    [Alias("VerifyAsync")]
    Task<JournalVerification> VerifyAsync(string runId);

    /// <summary>Verifies every run the database names (in the index, the heads or the journal), reporting the first <paramref name="maxReported"/> broken ones.</summary>
    [Alias("VerifyAllAsync")]
    Task<AuditReport> VerifyAllAsync(int maxReported);

    /// <summary>One page of journal rows for a SIEM, in (run, seq) order.</summary>
    [Alias("ExportAsync")]
    Task<IReadOnlyList<AuditEntry>> ExportAsync(AuditExportQuery query);
}

/// <summary>The outcome of verifying every run.</summary>
/// <param name="Runs">How many runs were checked.</param>
/// <param name="Rows">How many journal rows were checked.</param>
/// <param name="Broken">The runs that do not verify (at most the number asked for).</param>
/// <param name="BrokenRuns">How many runs do not verify, reported or not.</param>
[GenerateSerializer, Immutable, Alias("spine.AuditReport")]
public sealed record AuditReport(
    [property: Id(0)] int Runs,
    [property: Id(1)] long Rows,
    [property: Id(2)] IReadOnlyList<JournalVerification> Broken,
    [property: Id(3)] int BrokenRuns)
{
    /// <summary>True when every run verified.</summary>
    public bool Intact => BrokenRuns == 0;
}

/// <summary>Which journal rows to export: one run's, or every run's recorded since a time; after a position, to page.</summary>
[GenerateSerializer, Immutable, Alias("spine.AuditExportQuery")]
public sealed record AuditExportQuery
{
    /// <summary>Only this run's rows.</summary>
    [Id(0)] public string? RunId { get; init; }

    /// <summary>Only rows recorded at or after this time.</summary>
    [Id(1)] public DateTimeOffset? Since { get; init; }

    /// <summary>Rows after this run id (with <see cref="AfterSeq"/>): the last row of the previous page.</summary>
    [Id(2)] public string? AfterRunId { get; init; }

    /// <summary>Rows after this seq of <see cref="AfterRunId"/>.</summary>
    [Id(3)] public int AfterSeq { get; init; } = -1;

    /// <summary>The most rows in a page (1 to 10,000).</summary>
    [Id(4)] public int Limit { get; init; } = 1000;
}

/// <summary>One journal row as exported: everything its hash covers, the key that signed it and the hashes.</summary>
[GenerateSerializer, Immutable, Alias("spine.AuditEntry")]
public sealed record AuditEntry
{
    /// <summary>The run.</summary>
    [Id(0)] public required string RunId { get; init; }

    /// <summary>The row's place in the run's journal.</summary>
    [Id(1)] public required int Seq { get; init; }

    /// <summary>What the row records (a journal kind name).</summary>
    [Id(2)] public required string Kind { get; init; }

    /// <summary>The workflow step, for step rows.</summary>
    [Id(3)] public int? Step { get; init; }

    /// <summary>The step, tool or event name.</summary>
    [Id(4)] public required string Name { get; init; }

    /// <summary>False when the row records a failure.</summary>
    [Id(5)] public required bool Ok { get; init; }

    /// <summary>The row's JSON payload, exactly as stored.</summary>
    [Id(6)] public string? PayloadJson { get; init; }

    /// <summary>When the row was recorded.</summary>
    [Id(7)] public required DateTimeOffset RecordedAt { get; init; }

    /// <summary>The attempt, for step outcomes and attempts.</summary>
    [Id(8)] public int? Attempt { get; init; }

    /// <summary>The fingerprint of the key that signed the row (null before the keyed chain).</summary>
    [Id(9)] public string? KeyId { get; init; }

    /// <summary>The previous row's hash, hex.</summary>
    [Id(10)] public required string PrevHash { get; init; }

    /// <summary>This row's hash, hex.</summary>
    [Id(11)] public required string Hash { get; init; }
}
