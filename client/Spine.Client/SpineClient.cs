using System.Text.Json;
using Microsoft.Extensions.Options;
using Spine.Errors;
using Spine.Runs;

namespace Spine.Client;

/// <summary>The <see cref="ISpineClient"/> over an Orleans grain factory (a cluster client, or a silo's own).</summary>
public sealed class SpineClient : ISpineClient
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly IGrainFactory _grains;
    private readonly TimeSpan _waitSlice;
    private readonly TimeSpan _startRetryTimeout;
    private readonly Identity.SpineActor? _actor;

    /// <summary>Creates the client.</summary>
    public SpineClient(IGrainFactory grains, IOptions<SpineClientOptions>? options = null)
    {
        ArgumentNullException.ThrowIfNull(grains);
        _grains = grains;
        _waitSlice = options?.Value.WaitSlice ?? TimeSpan.FromSeconds(20);
        _startRetryTimeout = options?.Value.StartRetryTimeout ?? TimeSpan.FromMinutes(2);
        _actor = options?.Value.Actor;
    }

    /// <inheritdoc />
    public Task<RunInfo> StartAsync(StartRunRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentException.ThrowIfNullOrEmpty(request.WorkflowType);
        if (request.Actor is null && _actor is not null)
        {
            request = request with { Actor = _actor };
        }

        // The run id is chosen once, here: every try below asks for the same run.
        var run = Run(RunIds.For(request));
        return UntilKnownAsync(run.GetPrimaryKeyString(), () => run.StartAsync(request), cancellationToken);
    }

    /// <inheritdoc />
    public Task<RunInfo> StartAsync<TInput>(string workflowType, TInput input, string? idempotencyKey = null, string? accountId = null, int? workflowVersion = null,
        Identity.SpineActor? actor = null, CancellationToken cancellationToken = default) =>
        StartAsync(new StartRunRequest(workflowType, JsonSerializer.Serialize(input, Json), workflowVersion, idempotencyKey, accountId, Actor: actor), cancellationToken);

    /// <inheritdoc />
    public Task<RunInfo> GetAsync(string runId, CancellationToken cancellationToken = default) =>
        Run(runId).GetInfoAsync().WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<RunInfo> WaitAsync(string runId, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        WaitInSlicesAsync(slice => Run(runId).WaitAsync(slice), _ => false, timeout, cancellationToken);

    /// <inheritdoc />
    public Task<RunInfo> WaitForStatusAsync(string runId, RunStatus status, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        WaitInSlicesAsync(slice => Run(runId).WaitForStatusAsync(status, slice), info => info.Status == status, timeout, cancellationToken);

    /// <summary>
    /// Asks the run to wait in slices below the grain call timeout until it has finished, <paramref name="done"/> says
    /// so, or <paramref name="timeout"/> passes.
    /// </summary>
    private async Task<RunInfo> WaitInSlicesAsync(Func<TimeSpan, Task<RunInfo>> wait, Func<RunInfo, bool> done, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var deadline = timeout is { } t ? DateTimeOffset.UtcNow + t : DateTimeOffset.MaxValue;
        while (true)
        {
            var left = deadline - DateTimeOffset.UtcNow;
            var slice = left < _waitSlice ? (left > TimeSpan.Zero ? left : TimeSpan.Zero) : _waitSlice;
            var info = await wait(slice).WaitAsync(cancellationToken);
            if (info.Status.IsTerminal() || done(info) || DateTimeOffset.UtcNow >= deadline)
            {
                return info;
            }
        }
    }

    /// <inheritdoc />
    public async Task<TResult> GetResultAsync<TResult>(string runId, CancellationToken cancellationToken = default)
    {
        var info = await WaitAsync(runId, null, cancellationToken);
        if (info.Status != RunStatus.Completed)
        {
            throw new RunFailedException(runId, info.Status, info.Error);
        }

        return JsonSerializer.Deserialize<TResult>(info.ResultJson!, Json)!;
    }

    /// <inheritdoc />
    public Task<RunInfo> CancelAsync(string runId, string? reason = null, Identity.SpineActor? actor = null, CancellationToken cancellationToken = default) =>
        Run(runId).CancelAsync(reason, actor ?? _actor).WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<RunInfo> SignalAsync(string runId, SignalRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return Run(runId).SignalAsync(request.Actor is null && _actor is not null ? request with { Actor = _actor } : request).WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public Task<RunInfo> SignalAsync<TPayload>(string runId, string name, TPayload payload, string? signalId = null, Identity.SpineActor? actor = null,
        CancellationToken cancellationToken = default) =>
        SignalAsync(runId, new SignalRequest(name, JsonSerializer.Serialize(payload, Json), signalId, actor), cancellationToken);

    /// <inheritdoc />
    public Task<RunInfo> DecideApprovalAsync(string runId, Spine.Approvals.ApprovalVerdict verdict, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(verdict);
        return Run(runId).DecideApprovalAsync(verdict.Actor is null && _actor is not null ? verdict with { Actor = _actor } : verdict).WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public Task<Spine.Budgets.BudgetView> GetBudgetAsync(string accountId, CancellationToken cancellationToken = default) =>
        Budget(accountId).GetAsync().WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<Spine.Budgets.BudgetView> SetBudgetAsync(string accountId, Spine.Budgets.BudgetCeilings ceilings, Identity.SpineActor? actor = null, CancellationToken cancellationToken = default) =>
        Budget(accountId).SetAsync(ceilings, actor ?? _actor).WaitAsync(cancellationToken);

    private Spine.Budgets.IBudgetGrain Budget(string accountId)
    {
        if (string.IsNullOrWhiteSpace(accountId))
        {
            throw new InvalidIdentifierException("account id", 0);
        }

        RunIds.CheckIdentifier(accountId, "account id");
        return _grains.GetGrain<Spine.Budgets.IBudgetGrain>(accountId);
    }

    /// <inheritdoc />
    public Task<Spine.Policies.PolicySetView> GetPoliciesAsync(CancellationToken cancellationToken = default) =>
        _grains.GetGrain<IRunQueryGrain>(0).GetPoliciesAsync().WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<Spine.Slo.CostBucket>> GetCostsAsync(TimeSpan window, CancellationToken cancellationToken = default) =>
        _grains.GetGrain<IRunQueryGrain>(0).GetCostsAsync(window).WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<Spine.Alerts.AlertView>> ListAlertsAsync(Spine.Alerts.AlertQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        return _grains.GetGrain<IRunQueryGrain>(0).ListAlertsAsync(query).WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<Spine.Slo.SloReport>> GetSloAsync(string? workflowType = null, CancellationToken cancellationToken = default) =>
        _grains.GetGrain<IRunQueryGrain>(0).GetSloAsync(workflowType).WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<Spine.Tools.ToolView>> GetToolsAsync(string? tool = null, CancellationToken cancellationToken = default) =>
        _grains.GetGrain<IRunQueryGrain>(0).GetToolsAsync(tool).WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<Spine.RateLimits.RateLimitView>> GetRateLimitsAsync(string? accountId = null, CancellationToken cancellationToken = default) =>
        _grains.GetGrain<IRunQueryGrain>(0).GetRateLimitsAsync(accountId).WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<Spine.Approvals.PendingApproval>> ListApprovalsAsync(Spine.Approvals.ApprovalQuery query, CancellationToken cancellationToken = default) =>
        _grains.GetGrain<IRunQueryGrain>(0).ListApprovalsAsync(query).WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<RunInfo>> ListAsync(RunQuery query, CancellationToken cancellationToken = default) =>
        _grains.GetGrain<IRunQueryGrain>(0).ListAsync(query).WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<JournalEntryView>> GetJournalAsync(string runId, CancellationToken cancellationToken = default) =>
        Run(runId).GetJournalAsync().WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<JournalVerification> VerifyJournalAsync(string runId, CancellationToken cancellationToken = default) =>
        _grains.GetGrain<Audit.IAuditGrain>(0).VerifyAsync(runId).WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<Audit.AuditReport> VerifyAllJournalsAsync(int maxReported = 100, CancellationToken cancellationToken = default) =>
        _grains.GetGrain<Audit.IAuditGrain>(0).VerifyAllAsync(maxReported).WaitAsync(cancellationToken);

    /// <inheritdoc />
    public async IAsyncEnumerable<Audit.AuditEntry> ExportAuditAsync(string? runId = null, DateTimeOffset? since = null, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var query = new Audit.AuditExportQuery { RunId = runId, Since = since };
        while (true)
        {
            var page = await _grains.GetGrain<Audit.IAuditGrain>(0).ExportAsync(query).WaitAsync(cancellationToken);
            foreach (var entry in page)
            {
                yield return entry;
            }

            if (page.Count < query.Limit)
            {
                yield break;
            }

            query = query with { AfterRunId = page[^1].RunId, AfterSeq = page[^1].Seq };
        }
    }

    /// <inheritdoc />
    public Task<RunInfo> ResolveEscalationAsync(string runId, OperatorDecision decision, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(decision);
        return Run(runId).ResolveEscalationAsync(decision.Actor is null && _actor is not null ? decision with { Actor = _actor } : decision).WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<RunInfo>> ListDeadLettersAsync(int limit = 100, CancellationToken cancellationToken = default) =>
        ListAsync(new RunQuery { Status = RunStatus.DeadLettered, Limit = limit }, cancellationToken);

    /// <inheritdoc />
    public Task<RunInfo> DiscardAsync(string runId, string? reason = null, Identity.SpineActor? actor = null, CancellationToken cancellationToken = default) =>
        Run(runId).DiscardAsync(reason, actor ?? _actor).WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<RunInfo> ReplayAsync(ReplayRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Actor is null && _actor is not null)
        {
            request = request with { Actor = _actor };
        }

        var runId = request.IdempotencyKey is { Length: > 0 } key ? RunIds.FromIdempotencyKey("replay:" + request.SourceRunId, key) : RunIds.New();
        var run = Run(runId);
        return UntilKnownAsync(runId, () => run.StartReplayAsync(request), cancellationToken);
    }

    /// <inheritdoc />
    public Task<BreakerVerdict> GetBreakerAsync(string tool, CancellationToken cancellationToken = default) =>
        _grains.GetGrain<ICircuitBreakerGrain>(tool).GetVerdictAsync().WaitAsync(cancellationToken);

    /// <inheritdoc />
    public Task<BreakerVerdict> ResetBreakerAsync(string tool, CancellationToken cancellationToken = default) =>
        _grains.GetGrain<ICircuitBreakerGrain>(tool).ResetAsync().WaitAsync(cancellationToken);

    /// <summary>
    /// Asks a run grain to start until the answer is known. A failure that leaves the outcome unknown (the
    /// cluster or PostgreSQL unreachable, a call timed out, a silo died) is tried again against the same run
    /// id, where a start that landed is found and returned; so the caller either gets the run or an error
    /// after which nothing it did not see was started; when <see cref="SpineClientOptions.StartRetryTimeout"/>
    /// runs out first, a <see cref="StartOutcomeUnknownException"/> names the run id to look up or start again.
    /// </summary>
    private async Task<RunInfo> UntilKnownAsync(string runId, Func<Task<RunInfo>> start, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.UtcNow + _startRetryTimeout;
        var delay = TimeSpan.FromMilliseconds(100);
        while (true)
        {
            try
            {
                return await start().WaitAsync(cancellationToken);
            }
            catch (Exception e) when (IsOutcomeUnknown(e) && !cancellationToken.IsCancellationRequested)
            {
                if (DateTimeOffset.UtcNow + delay >= deadline)
                {
                    throw new StartOutcomeUnknownException(runId, _startRetryTimeout, e);
                }

                await Task.Delay(delay, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(2).Ticks));
            }
        }
    }

    private static bool IsOutcomeUnknown(Exception e) => e is
        StorageUnavailableException { IsTransient: true }
        or TimeoutException
        or SiloUnavailableException
        or OrleansMessageRejectionException
        or Orleans.Runtime.Messaging.ConnectionFailedException;

    private IWorkflowRunGrain Run(string runId)
    {
        ArgumentException.ThrowIfNullOrEmpty(runId);
        return _grains.GetGrain<IWorkflowRunGrain>(runId);
    }
}
