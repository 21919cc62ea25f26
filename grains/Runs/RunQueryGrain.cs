using Orleans.Concurrency;
using Spine.Approvals;
using Spine.Journal;

namespace Spine.Runs;

/// <summary>Answers run listings from PostgreSQL on whichever silo takes the call.</summary>
[StatelessWorker]
public sealed class RunQueryGrain(JournalStore store, Policies.PolicyEngine policies, RateLimits.RateLimitRegistry limits) : Grain, IRunQueryGrain
{
    /// <inheritdoc />
    public async Task<IReadOnlyList<RateLimits.RateLimitView>> GetRateLimitsAsync(string? accountId)
    {
        return await Task.WhenAll(limits.All.Select(async limit =>
        {
            var view = new RateLimits.RateLimitView
            {
                Name = limit.Name, Target = limit.Target, Subject = limit.Subject, Unit = limit.Unit, PerAccount = limit.PerAccount,
                Account = limit.PerAccount ? accountId : null, PerSecond = limit.Spec.PerSecond, Capacity = limit.Spec.Capacity,
            };
            if (limit.PerAccount && accountId is null)
            {
                return view;
            }

            var state = await GrainFactory.GetGrain<RateLimits.IRateLimiterGrain>(limit.KeyFor(accountId)).GetStateAsync();
            return view with { NextFree = state.NextFree, BlockedUntil = state.BlockedUntil, Granted = state.Granted, Penalties = state.Penalties };
        }));
    }

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
