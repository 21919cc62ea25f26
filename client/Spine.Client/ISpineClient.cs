using Spine.Runs;

namespace Spine.Client;

/// <summary>Starts, watches and controls workflow runs on a Spine cluster.</summary>
public interface ISpineClient
{
    /// <summary>Starts a run. With an idempotency key, a second start of the same key returns the first run.</summary>
    /// <exception cref="Spine.Errors.UnknownWorkflowException">No such workflow is registered on the silos.</exception>
    /// <exception cref="Spine.Errors.InvalidPayloadException">The input is not valid JSON for the workflow.</exception>
    /// <exception cref="Spine.Errors.PayloadTooLargeException">The input is over the configured ceiling.</exception>
    /// <exception cref="Spine.Errors.StorageUnavailableException">PostgreSQL is unreachable; nothing was started.</exception>
    Task<RunInfo> StartAsync(StartRunRequest request, CancellationToken cancellationToken = default);

    /// <summary>Starts a run with an input object serialised to JSON (camelCase), as <paramref name="actor"/> (null: the client's configured actor).</summary>
    Task<RunInfo> StartAsync<TInput>(string workflowType, TInput input, string? idempotencyKey = null, string? accountId = null, int? workflowVersion = null,
        Identity.SpineActor? actor = null, CancellationToken cancellationToken = default);

    /// <summary>The run's current snapshot.</summary>
    /// <exception cref="Spine.Errors.RunNotFoundException">No run has this id.</exception>
    Task<RunInfo> GetAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>Waits until the run is terminal (or <paramref name="timeout"/> passes) and returns its snapshot.</summary>
    Task<RunInfo> WaitAsync(string runId, TimeSpan? timeout = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Waits until the run shows <paramref name="status"/> (say <see cref="RunStatus.AwaitingApproval"/>), or has
    /// finished, or <paramref name="timeout"/> passes, and returns its snapshot: check its status. Without polling:
    /// the run answers when its status changes.
    /// </summary>
    /// <exception cref="Spine.Errors.RunNotFoundException">No run has this id.</exception>
    Task<RunInfo> WaitForStatusAsync(string runId, RunStatus status, TimeSpan? timeout = null, CancellationToken cancellationToken = default);

    /// <summary>Waits for the run's result.</summary>
    /// <exception cref="Spine.Errors.RunFailedException">The run ended Failed or Cancelled.</exception>
    Task<TResult> GetResultAsync<TResult>(string runId, CancellationToken cancellationToken = default);

    /// <summary>Requests cancellation; the run stops at its next step boundary.</summary>
    Task<RunInfo> CancelAsync(string runId, string? reason = null, Identity.SpineActor? actor = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Sends a signal to a run: journaled at once, and received by the run's next (or current) wait for its name
    /// (<c>ctx.WaitForSignalAsync</c>), oldest first per name. With a <see cref="SignalRequest.SignalId"/>, sending
    /// again (a retry after a lost answer) does not journal it twice.
    /// </summary>
    /// <exception cref="Spine.Errors.RunNotFoundException">No run has this id.</exception>
    /// <exception cref="Spine.Errors.InvalidRunStateException">The run has finished, or is being cancelled or compensated.</exception>
    /// <exception cref="Spine.Errors.InvalidPayloadException">The payload is not JSON, or the name is one of Spine's own (<c>spine.</c>).</exception>
    /// <exception cref="Spine.Errors.PayloadTooLargeException">The payload is over the configured ceiling.</exception>
    Task<RunInfo> SignalAsync(string runId, SignalRequest request, CancellationToken cancellationToken = default);

    /// <summary>Sends a signal whose payload is an object serialised to JSON (camelCase), as <paramref name="actor"/> (null: the client's configured actor).</summary>
    Task<RunInfo> SignalAsync<TPayload>(string runId, string name, TPayload payload, string? signalId = null, Identity.SpineActor? actor = null,
        CancellationToken cancellationToken = default);

    /// <summary>
    /// Decides an approval a run waits for (<c>ctx.RequestApprovalAsync</c>), as <see cref="Spine.Approvals.ApprovalVerdict.Actor"/>
    /// (null: the client's configured actor), who must hold <see cref="Spine.Approvals.ApprovalVerdict.Role"/>, a role the
    /// approval accepts. The decision, actor, role and comment are journaled.
    /// </summary>
    /// <exception cref="Spine.Errors.ApprovalForbiddenException">No actor, or one without the role, or a role the approval does not accept.</exception>
    /// <exception cref="Spine.Errors.ApprovalNotPendingException">The run waits for no such approval, or it was decided already.</exception>
    Task<RunInfo> DecideApprovalAsync(string runId, Spine.Approvals.ApprovalVerdict verdict, CancellationToken cancellationToken = default);

    /// <summary>An account's budget: ceilings, and spent, reserved and remaining tokens and cost per window.</summary>
    /// <exception cref="Spine.Errors.UnknownAccountException">No budget was ever set or spent for the account.</exception>
    Task<Spine.Budgets.BudgetView> GetBudgetAsync(string accountId, CancellationToken cancellationToken = default);

    /// <summary>Sets an account's ceilings, as <paramref name="actor"/> (null: the client's configured actor).</summary>
    /// <exception cref="Spine.Errors.InvalidPayloadException">A ceiling is negative.</exception>
    Task<Spine.Budgets.BudgetView> SetBudgetAsync(string accountId, Spine.Budgets.BudgetCeilings ceilings, Identity.SpineActor? actor = null, CancellationToken cancellationToken = default);

    /// <summary>The run policies the cluster enforces (as one silo reports them: every silo is configured alike).</summary>
    Task<Spine.Policies.PolicySetView> GetPoliciesAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// The cluster's tools: each version's contract, whether the answering silo registers it, and the in-flight runs that
    /// pinned it; of one tool when <paramref name="tool"/> is given (<see cref="Spine.Errors.UnknownToolException"/> when unknown).
    /// </summary>
    Task<IReadOnlyList<Spine.Tools.ToolView>> GetToolsAsync(string? tool = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// End-to-end success rate per workflow type over rolling windows (1 h, 24 h, 7 d unless <c>Spine:Slo:Windows</c>
    /// says otherwise), with the error budget its target (<c>Spine:Slo:Targets</c>) leaves and its burn rate.
    /// </summary>
    Task<IReadOnlyList<Spine.Slo.SloReport>> GetSloAsync(string? workflowType = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// What the runs that ended in the last <paramref name="window"/> (1 hour to 7 days) spent, per workflow type and
    /// hour, as their budgets settled it.
    /// </summary>
    /// <exception cref="Spine.Errors.InvalidPayloadException">The window is outside 1 hour to 7 days.</exception>
    Task<IReadOnlyList<Spine.Slo.CostBucket>> GetCostsAsync(TimeSpan window, CancellationToken cancellationToken = default);

    /// <summary>
    /// Anomaly alerts, newest first: a workflow type's failure rate, cost per run, steps per run or tool mix departed
    /// sharply from its baseline.
    /// </summary>
    Task<IReadOnlyList<Spine.Alerts.AlertView>> ListAlertsAsync(Spine.Alerts.AlertQuery query, CancellationToken cancellationToken = default);

    /// <summary>The cluster's rate limits and their state; per-account limits show <paramref name="accountId"/>'s (none without one).</summary>
    Task<IReadOnlyList<Spine.RateLimits.RateLimitView>> GetRateLimitsAsync(string? accountId = null, CancellationToken cancellationToken = default);

    /// <summary>The approvals runs wait for, by account and by the role that may decide them.</summary>
    Task<IReadOnlyList<Spine.Approvals.PendingApproval>> ListApprovalsAsync(Spine.Approvals.ApprovalQuery query, CancellationToken cancellationToken = default);

    /// <summary>Lists runs by status, type and account, newest first.</summary>
    Task<IReadOnlyList<RunInfo>> ListAsync(RunQuery query, CancellationToken cancellationToken = default);

    /// <summary>The run's journal.</summary>
    Task<IReadOnlyList<JournalEntryView>> GetJournalAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Verifies the run's journal: its keyed hash chain, its head anchor and its index row (on a silo, which holds
    /// the key). Reports the first row that does not verify.
    /// </summary>
    /// <exception cref="Spine.Errors.RunNotFoundException">Nothing in the database names the run.</exception>
    Task<JournalVerification> VerifyJournalAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>Verifies every run the database names; reports up to <paramref name="maxReported"/> broken ones.</summary>
    Task<Audit.AuditReport> VerifyAllJournalsAsync(int maxReported = 100, CancellationToken cancellationToken = default);

    /// <summary>The journal rows of one run, or of every run since a time, in (run, seq) order, for a SIEM.</summary>
    IAsyncEnumerable<Audit.AuditEntry> ExportAuditAsync(string? runId = null, DateTimeOffset? since = null, CancellationToken cancellationToken = default);

    /// <summary>Decides on a run waiting in <see cref="RunStatus.AwaitingOperator"/>: retry the step, skip it with a result, or fail the run.</summary>
    /// <exception cref="Spine.Errors.InvalidRunStateException">The run is not awaiting an operator.</exception>
    Task<RunInfo> ResolveEscalationAsync(string runId, OperatorDecision decision, CancellationToken cancellationToken = default);

    /// <summary>The dead-letter queue: runs in <see cref="RunStatus.DeadLettered"/>, newest first, with their failing step and error.</summary>
    Task<IReadOnlyList<RunInfo>> ListDeadLettersAsync(int limit = 100, CancellationToken cancellationToken = default);

    /// <summary>Removes a run from the dead-letter queue (status <see cref="RunStatus.Discarded"/>); its journal stays.</summary>
    /// <exception cref="Spine.Errors.InvalidRunStateException">The run is not dead-lettered.</exception>
    Task<RunInfo> DiscardAsync(string runId, string? reason = null, Identity.SpineActor? actor = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Forks a new run from a finished one (completed, failed, cancelled, dead-lettered): the source's recorded
    /// steps before <see cref="ReplayRequest.FromStep"/> are reused, not executed again; the new run records its origin.
    /// </summary>
    Task<RunInfo> ReplayAsync(ReplayRequest request, CancellationToken cancellationToken = default);

    /// <summary>A tool's circuit breaker as the cluster sees it.</summary>
    Task<BreakerVerdict> GetBreakerAsync(string tool, CancellationToken cancellationToken = default);

    /// <summary>Closes a tool's circuit breaker (operator override).</summary>
    Task<BreakerVerdict> ResetBreakerAsync(string tool, CancellationToken cancellationToken = default);
}
