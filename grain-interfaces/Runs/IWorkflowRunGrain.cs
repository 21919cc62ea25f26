using Orleans.Concurrency;
using Spine.Identity;

namespace Spine.Runs;

/// <summary>One workflow run. Keyed by run id (see <see cref="RunIds"/>).</summary>
[Alias("spine.IWorkflowRunGrain")]
public interface IWorkflowRunGrain : IGrainWithStringKey
{
    /// <summary>
    /// Starts the run, or, when it was already started, returns it unchanged (idempotent start).
    /// </summary>
    /// <exception cref="Spine.Errors.UnknownWorkflowException">No such workflow type or version is registered.</exception>
    /// <exception cref="Spine.Errors.PayloadTooLargeException">The input is over the configured ceiling.</exception>
    /// <exception cref="Spine.Errors.InvalidPayloadException">The input is not valid JSON.</exception>
    [Alias("StartAsync")]
    Task<RunInfo> StartAsync(StartRunRequest request);

    /// <summary>The current snapshot.</summary>
    /// <exception cref="Spine.Errors.RunNotFoundException">No run has this id.</exception>
    [Alias("GetInfoAsync"), AlwaysInterleave]
    Task<RunInfo> GetInfoAsync();

    /// <summary>Waits until the run is terminal or <paramref name="timeout"/> passes, then returns the snapshot.</summary>
    [Alias("WaitAsync"), AlwaysInterleave]
    Task<RunInfo> WaitAsync(TimeSpan timeout);

    /// <summary>
    /// Waits until the run shows <paramref name="status"/>, or has finished, or <paramref name="timeout"/> passes, then
    /// returns the snapshot (a status the run passes through between two looks may be missed: it is a wait for a
    /// state, not a feed of changes).
    /// </summary>
    [Alias("WaitForStatusAsync"), AlwaysInterleave]
    Task<RunInfo> WaitForStatusAsync(RunStatus status, TimeSpan timeout);

    /// <summary>Requests cancellation: journaled at once, effective at the next step boundary.</summary>
    [Alias("CancelAsync"), AlwaysInterleave]
    Task<RunInfo> CancelAsync(string? reason, SpineActor? actor);

    /// <summary>
    /// Journals a signal for the run; the workflow receives it at its next (or current) wait for that name, in
    /// the order signals of one name arrived. Returns once the signal is durable.
    /// </summary>
    /// <exception cref="Spine.Errors.RunNotFoundException">No run has this id.</exception>
    /// <exception cref="Spine.Errors.InvalidRunStateException">The run has finished, or is being cancelled or compensated.</exception>
    /// <exception cref="Spine.Errors.InvalidPayloadException">The payload is not JSON, or the name is reserved.</exception>
    /// <exception cref="Spine.Errors.PayloadTooLargeException">The payload is over the configured ceiling.</exception>
    [Alias("SignalAsync"), AlwaysInterleave]
    Task<RunInfo> SignalAsync(SignalRequest request);

    /// <summary>
    /// Decides an approval the run waits for, as an actor holding one of its approver roles; the decision, actor,
    /// role and comment are journaled and the run goes on.
    /// </summary>
    /// <exception cref="Spine.Errors.ApprovalForbiddenException">No actor, or one that does not hold the role, or a role the approval does not accept.</exception>
    /// <exception cref="Spine.Errors.ApprovalNotPendingException">The run waits for no such approval, or it was decided already.</exception>
    [Alias("DecideApprovalAsync"), AlwaysInterleave]
    Task<RunInfo> DecideApprovalAsync(Spine.Approvals.ApprovalVerdict verdict);

    /// <summary>Decides on a step escalated to an operator (<see cref="RunStatus.AwaitingOperator"/>).</summary>
    /// <exception cref="Spine.Errors.InvalidRunStateException">The run is not awaiting an operator.</exception>
    [Alias("ResolveEscalationAsync"), AlwaysInterleave]
    Task<RunInfo> ResolveEscalationAsync(OperatorDecision decision);

    /// <summary>Discards a dead-lettered run: it leaves the dead-letter queue, its journal stays.</summary>
    /// <exception cref="Spine.Errors.InvalidRunStateException">The run is not dead-lettered.</exception>
    [Alias("DiscardAsync")]
    Task<RunInfo> DiscardAsync(string? reason, SpineActor? actor);

    /// <summary>
    /// Starts this (new) run as a replay of another: the source's recorded steps before the replay point are
    /// copied, not executed again. Idempotent like <see cref="StartAsync"/>.
    /// </summary>
    [Alias("StartReplayAsync")]
    Task<RunInfo> StartReplayAsync(ReplayRequest request);

    /// <summary>Makes sure an unfinished run is executing (the recovery sweep's call); returns its snapshot.</summary>
    /// <exception cref="Spine.Errors.RunNotFoundException">No run has this id.</exception>
    [Alias("ResumeAsync"), AlwaysInterleave]
    Task<RunInfo> ResumeAsync();

    /// <summary>The run's journal rows, in order.</summary>
    [Alias("GetJournalAsync"), AlwaysInterleave]
    Task<IReadOnlyList<JournalEntryView>> GetJournalAsync();
}

/// <summary>Queries across runs. A stateless worker: any silo answers from PostgreSQL.</summary>
[Alias("spine.IRunQueryGrain")]
public interface IRunQueryGrain : IGrainWithIntegerKey
{
    /// <summary>Runs matching <paramref name="query"/>, newest first.</summary>
    [Alias("ListAsync")]
    Task<IReadOnlyList<RunInfo>> ListAsync(RunQuery query);

    /// <summary>The run policies the answering silo enforces.</summary>
    [Alias("GetPoliciesAsync")]
    Task<Spine.Policies.PolicySetView> GetPoliciesAsync();

    /// <summary>
    /// The rate limits the answering silo enforces, each with its grain's state; a per-account limit shows the state
    /// of <paramref name="accountId"/>'s bucket (none without an account).
    /// </summary>
    [Alias("GetRateLimitsAsync")]
    Task<IReadOnlyList<Spine.RateLimits.RateLimitView>> GetRateLimitsAsync(string? accountId);

    /// <summary>
    /// The tools the answering silo registers and the versions any silo recorded, each version with the in-flight runs
    /// that pinned it; of one tool when <paramref name="tool"/> is given (an <see cref="Spine.Errors.UnknownToolException"/>
    /// when nothing knows it).
    /// </summary>
    [Alias("GetToolsAsync")]
    Task<IReadOnlyList<Spine.Tools.ToolView>> GetToolsAsync(string? tool);

    /// <summary>Spend per workflow type and hour of the runs that ended in the last <paramref name="window"/>.</summary>
    [Alias("GetCostsAsync")]
    Task<IReadOnlyList<Spine.Slo.CostBucket>> GetCostsAsync(TimeSpan window);

    /// <summary>Anomaly alerts, newest first.</summary>
    [Alias("ListAlertsAsync")]
    Task<IReadOnlyList<Spine.Alerts.AlertView>> ListAlertsAsync(Spine.Alerts.AlertQuery query);

    /// <summary>End-to-end success rates per workflow type over the configured windows, against their targets; of one type when given.</summary>
    [Alias("GetSloAsync")]
    Task<IReadOnlyList<Spine.Slo.SloReport>> GetSloAsync(string? workflowType);

    /// <summary>The approvals runs in <see cref="RunStatus.AwaitingApproval"/> wait for, newest run first.</summary>
    [Alias("ListApprovalsAsync")]
    Task<IReadOnlyList<Spine.Approvals.PendingApproval>> ListApprovalsAsync(Spine.Approvals.ApprovalQuery query);
}

/// <summary>The outcome of verifying a run's journal (<see cref="Spine.Audit.IAuditGrain"/>).</summary>
/// <param name="RunId">The run.</param>
/// <param name="Rows">How many rows were checked.</param>
/// <param name="Intact">True when every row's hash and link matched.</param>
/// <param name="FirstBadSeq">The first row that does not match, when not intact.</param>
/// <param name="Problem">What did not match.</param>
/// <param name="UnknownKeyId">When the first bad row is signed with a key this silo does not hold: its fingerprint (a configuration gap, not necessarily tampering).</param>
[GenerateSerializer, Immutable, Alias("spine.JournalVerification")]
public sealed record JournalVerification(
    [property: Id(0)] string RunId,
    [property: Id(1)] int Rows,
    [property: Id(2)] bool Intact,
    [property: Id(3)] int? FirstBadSeq = null,
    [property: Id(4)] string? Problem = null,
    [property: Id(5)] string? UnknownKeyId = null);

/// <summary>
/// One partition of the cluster's recovery sweep (keys 0 to 15, a partition each, by a hash of the run id):
/// on each tick of its reminder, and when a silo is declared dead, it touches every run of its partition the
/// index shows as executing, so a run whose silo died resumes on a live one, and every run whose index row says it
/// waits for a time due within two sweep periods (<c>wake_at</c>), so that its wait ends on time in memory.
/// </summary>
[Alias("spine.IRunRecoveryGrain")]
public interface IRunRecoveryGrain : IGrainWithIntegerKey
{
    /// <summary>Makes sure the sweep's reminder exists and sweeps once soon. Called by every silo when it starts.</summary>
    [Alias("StartAsync")]
    Task StartAsync();

    /// <summary>Sweeps now; returns how many runs were touched.</summary>
    [Alias("SweepAsync")]
    Task<int> SweepAsync();
}
