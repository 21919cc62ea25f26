using Orleans.Concurrency;
using Spine.Approvals;
using Spine.Journal;

namespace Spine.Runs;

/// <summary>Answers run listings from PostgreSQL on whichever silo takes the call.</summary>
[StatelessWorker]
public sealed class RunQueryGrain(JournalStore store, Policies.PolicyEngine policies, RateLimits.RateLimitRegistry limits, Tools.ToolRegistry tools, Tools.ToolCatalog catalog, Slo.SloCalculator slo,
    Alerts.AlertStore alerts,
    Slo.CostCalculator costs)
    : Grain, IRunQueryGrain
{
    /// <inheritdoc />
    public Task<IReadOnlyList<Slo.CostBucket>> GetCostsAsync(TimeSpan window) => costs.ReportAsync(window, CancellationToken.None);

    /// <inheritdoc />
    public Task<IReadOnlyList<Alerts.AlertView>> ListAlertsAsync(Alerts.AlertQuery query) => alerts.ListAsync(query, CancellationToken.None);

    /// <inheritdoc />
    public Task<IReadOnlyList<Slo.SloReport>> GetSloAsync(string? workflowType) => slo.ReportAsync(workflowType, CancellationToken.None);

    /// <inheritdoc />
    public async Task<IReadOnlyList<Tools.ToolView>> GetToolsAsync(string? tool)
    {
        var stored = await catalog.StoredAsync(tool is null ? null : [tool], CancellationToken.None);
        var pins = (await catalog.PinsAsync(tool, CancellationToken.None)).ToDictionary(p => (p.Tool, p.Version));
        var names = tools.All.Select(t => t.Definition.Name).Concat(stored.Keys.Select(k => k.Name)).Concat(pins.Keys.Select(k => k.Tool))
            .Where(n => tool is null || n == tool).Distinct().Order(StringComparer.Ordinal).ToList();
        if (tool is not null && names.Count == 0)
        {
            throw new Errors.UnknownToolException(tool, null);
        }

        return names.Select(name =>
        {
            var here = tools.All.Where(t => t.Definition.Name == name).ToDictionary(t => t.Definition.Version, t => t.Definition);
            var versions = here.Keys.Concat(stored.Keys.Where(k => k.Name == name).Select(k => k.Version)).Concat(pins.Keys.Where(k => k.Tool == name).Select(k => k.Version))
                .Distinct().OrderBy(v => NuGet.Versioning.SemanticVersion.TryParse(v, out var parsed) ? parsed : new NuGet.Versioning.SemanticVersion(0, 0, 0))
                .Select(version =>
                {
                    var definition = here.GetValueOrDefault(version) ?? stored.GetValueOrDefault((name, version))?.Definition;
                    var record = stored.GetValueOrDefault((name, version));
                    var pin = pins.GetValueOrDefault((name, version));
                    return new Tools.ToolVersionView
                    {
                        Version = version, Description = definition?.Description ?? "", Effect = here.GetValueOrDefault(version)?.Effect.ToString(),
                        InputSchema = definition?.InputSchema ?? "", OutputSchema = definition?.OutputSchema ?? "", Registered = here.ContainsKey(version),
                        FirstRegisteredAt = record?.RegisteredAt, PinnedBy = pin?.Runs ?? 0, PinningRuns = pin?.SomeRunIds ?? [],
                        Digest = definition is null ? "" : Convert.ToHexStringLower(Tools.ToolCatalog.Digest(definition)),
                    };
                }).ToList();
            return new Tools.ToolView { Name = name, Newest = tools.TryResolve(name)?.Definition.Version, Versions = versions };
        }).ToList();
    }

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

        // The index says which runs wait; each run's own journal says for what, and whom. One run that cannot answer
        // (quarantined, or moving between activations twice in a row) is left out rather than failing the inbox.
        var runs = await Task.WhenAll(waiting.Select(r => InfoOrNullAsync(r.RunId)));
        return runs
            .OfType<RunInfo>()
            .SelectMany(r => r.Approvals)
            .Where(a => query.Role is null || a.ApproverRoles.Contains(query.Role, StringComparer.Ordinal))
            .ToList();
    }

    private async Task<RunInfo?> InfoOrNullAsync(string runId)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await GrainFactory.GetGrain<IWorkflowRunGrain>(runId).GetInfoAsync();
            }
            catch (OrleansMessageRejectionException) when (attempt < 3)
            {
                // Forwarded to an activation that was deactivating: ask the next one.
                await Task.Delay(50 * attempt);
            }
            catch (Exception e) when (e is Errors.JournalTamperedException or OrleansMessageRejectionException)
            {
                return null;
            }
        }
    }
}
