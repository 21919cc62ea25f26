using Orleans.Concurrency;
using Spine.Runs;

namespace Spine.Audit;

/// <summary>Answers audit checks and exports on whichever silo takes the call.</summary>
[StatelessWorker]
public sealed class AuditGrain(JournalAudit audit) : Grain, IAuditGrain
{
    /// <inheritdoc />
    public Task<JournalVerification> VerifyAsync(string runId)
    {
        RunIds.CheckIdentifier(runId, "run id");
        return audit.VerifyAsync(runId);
    }

    /// <inheritdoc />
    public Task<AuditReport> VerifyAllAsync(int maxReported) => audit.VerifyAllAsync(Math.Clamp(maxReported, 0, 10_000));

    /// <inheritdoc />
    public Task<IReadOnlyList<AuditEntry>> ExportAsync(AuditExportQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        RunIds.CheckIdentifier(query.RunId, "run id");
        return audit.ExportAsync(query);
    }
}
