using Orleans.Concurrency;
using Spine.Approvals;
using Spine.Journal;

namespace Spine.Runs;

/// <summary>Answers run listings from PostgreSQL on whichever silo takes the call.</summary>
[StatelessWorker]
public sealed class RunQueryGrain(JournalStore store, Policies.PolicyEngine policies) : Grain, IRunQueryGrain
{
    /// <inheritdoc />
    public Task<Policies.PolicySetView> GetPoliciesAsync() => Task.FromResult(policies.View());

    /// <inheritdoc />
    public Task<IReadOnlyList<RunInfo>> ListAsync(RunQuery query) => store.ListAsync(query);

    /// <inheritdoc />
    public async Task<IReadOnlyList<PendingApproval>> ListApprovalsAsync(ApprovalQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        var waiting = await store.ListAsync(new RunQuery { Status = RunStatus.AwaitingApproval, AccountId = query.AccountId, Limit = query.Limit });

        // The index says which runs wait; each run's own journal says for what, and whom.
        var runs = await Task.WhenAll(waiting.Select(r => GrainFactory.GetGrain<IWorkflowRunGrain>(r.RunId).GetInfoAsync()));
        return runs
            .SelectMany(r => r.Approvals)
            .Where(a => query.Role is null || a.ApproverRoles.Contains(query.Role, StringComparer.Ordinal))
            .ToList();
    }
}
