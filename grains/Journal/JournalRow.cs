using Spine.Runs;

namespace Spine.Journal;

/// <summary>What a journal row records. Stored as its integer value: never renumber a member.</summary>
public enum JournalKind : short
{
    /// <summary>The run was accepted (seq 0): workflow type, version, account, input.</summary>
    RunStarted = 0,

    /// <summary>A <c>ctx.RunAsync</c> side effect.</summary>
    Step = 1,

    /// <summary>A <c>ctx.CallToolAsync</c> tool call.</summary>
    Tool = 2,

    /// <summary>A <c>ctx.CallModelAsync</c> model turn.</summary>
    Model = 3,

    /// <summary>A <c>ctx.SleepAsync</c> durable timer: its wake-up time.</summary>
    Timer = 4,

    /// <summary>A recorded clock reading.</summary>
    Time = 5,

    /// <summary>A recorded random value.</summary>
    Random = 6,

    /// <summary>One failed attempt of a step that will be retried: class, error and when the retry is due.</summary>
    AttemptFailed = 7,

    /// <summary>A step declared its compensating tool call before its first attempt.</summary>
    CompensationRegistered = 8,

    /// <summary>A <c>ctx.SleepAsync</c> durable timer ended (its place in the journal orders it among parallel calls on replay).</summary>
    TimerFired = 9,

    /// <summary>
    /// The outcome of a <c>ctx.WaitForSignalAsync</c>: the signal it received (its row's seq, payload and sender), or,
    /// not ok, that the wait's deadline passed.
    /// </summary>
    Signal = 10,

    /// <summary>A <c>ctx.WaitForSignalAsync</c> began waiting, with its deadline (so a re-execution keeps the same one).</summary>
    SignalAwaited = 11,

    /// <summary>The outcome of a <c>ctx.RequestApprovalAsync</c>: approved or rejected, by whom, or by its deadline.</summary>
    Approval = 12,

    /// <summary>A <c>ctx.RequestApprovalAsync</c> asked: the question, the proposed action, the approver roles and the deadline.</summary>
    ApprovalRequested = 13,

    /// <summary>An approval's deadline passed undecided and it went to other approver roles, with a new deadline.</summary>
    ApprovalEscalated = 14,

    /// <summary>A call the run's policy does not permit: the rule that denied it and why (the step's outcome follows, failed).</summary>
    PolicyDenied = 15,

    /// <summary>A model or tool call's worst case was reserved in its run's and account's budgets (and at what price, on which client).</summary>
    BudgetReserved = 16,

    /// <summary>What a call used, replacing its reservation (journaled in one commit with the call's outcome).</summary>
    BudgetSettled = 17,

    /// <summary>A call did not fit its run's or account's budget and was not made (the step's outcome follows, failed).</summary>
    BudgetRefused = 18,

    /// <summary>A call did not fit its account's daily budget and the run waits until the window resets.</summary>
    BudgetPaused = 19,

    /// <summary>A caller asked to cancel the run.</summary>
    CancelRequested = 20,

    /// <summary>A step exhausted its retries and was handed to an operator.</summary>
    Escalated = 21,

    /// <summary>An operator decided on an escalated step (retry, skip or fail).</summary>
    OperatorDecided = 22,

    /// <summary>A signal arrived for the run (name, payload, sender), whether or not the workflow waits for it yet.</summary>
    SignalReceived = 25,

    /// <summary>The run began compensating its completed steps; the payload holds how the run ends afterwards.</summary>
    CompensationStarted = 23,

    /// <summary>A call's rate limit had no permit within the in-memory wait: which limit, and until when the call waits durably.</summary>
    RateLimited = 26,

    /// <summary>One compensation attempt (step = the compensated step).</summary>
    Compensated = 24,

    /// <summary>The run ended with a result.</summary>
    RunCompleted = 30,

    /// <summary>The run ended with an error.</summary>
    RunFailed = 31,

    /// <summary>The run ended by cancellation.</summary>
    RunCancelled = 32,

    /// <summary>The run ended in the dead-letter queue.</summary>
    RunDeadLettered = 33,

    /// <summary>An operator discarded the dead-lettered run.</summary>
    RunDiscarded = 34,
}

/// <summary>One row of <c>spine_journal</c>.</summary>
/// <param name="RunId">The run.</param>
/// <param name="Seq">Position in the run's journal, from 0, without gaps.</param>
/// <param name="Kind">What the row records.</param>
/// <param name="Step">The workflow step number for step kinds; null for run events.</param>
/// <param name="Name">The step name, tool name, or event name.</param>
/// <param name="Ok">False when the row records a failure.</param>
/// <param name="Payload">JSON text; its exact bytes are hashed.</param>
/// <param name="RecordedAt">When the row was recorded (UTC, microsecond precision as PostgreSQL keeps it).</param>
/// <param name="PrevHash">The previous row's hash (32 zero bytes for seq 0).</param>
/// <param name="Hash">This row's hash.</param>
/// <param name="Attempt">For step outcomes and attempts: which attempt (from 1).</param>
/// <param name="KeyId">The fingerprint of the key that signed the row; null for rows from before the keyed chain.</param>
public sealed record JournalRow(
    string RunId,
    int Seq,
    JournalKind Kind,
    int? Step,
    string Name,
    bool Ok,
    string? Payload,
    DateTimeOffset RecordedAt,
    byte[] PrevHash,
    byte[] Hash,
    int? Attempt = null,
    string? KeyId = null)
{
    /// <summary>True for the rows replay answers a workflow call from: the outcome of a step.</summary>
    public bool IsStepOutcome => Step is not null && Kind is JournalKind.Step or JournalKind.Tool or JournalKind.Model
        or JournalKind.Timer or JournalKind.Time or JournalKind.Random or JournalKind.Signal or JournalKind.Approval;

    /// <summary>The row as exported for a SIEM: every field its hash covers, its key id and both hashes.</summary>
    public Audit.AuditEntry ToAuditEntry() => new()
    {
        RunId = RunId,
        Seq = Seq,
        Kind = Kind.ToString(),
        Step = Step,
        Name = Name,
        Ok = Ok,
        PayloadJson = Payload,
        RecordedAt = RecordedAt,
        Attempt = Attempt,
        KeyId = KeyId,
        PrevHash = Convert.ToHexStringLower(PrevHash),
        Hash = Convert.ToHexStringLower(Hash),
    };

    /// <summary>The operator view of the row.</summary>
    public JournalEntryView ToView() => new()
    {
        Seq = Seq,
        Kind = Kind.ToString(),
        Step = Step,
        Name = Name,
        Outcome = Ok ? "ok" : "error",
        PayloadJson = Payload,
        RecordedAt = RecordedAt,
        Hash = Convert.ToHexStringLower(Hash),
        Attempt = Attempt,
    };
}

/// <summary>The <c>spine_runs</c> index row of a run, written with the journal row that changes it.</summary>
public sealed record RunRow(
    string RunId,
    string WorkflowType,
    int WorkflowVersion,
    string? AccountId,
    string? IdempotencyKey,
    RunStatus Status,
    string? Result,
    string? ErrorKind,
    string? ErrorMessage,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    int? ErrorStep = null,
    string? ErrorStepName = null,
    string? OriginRunId = null,
    int JournalSeq = 0,
    DateTimeOffset? WakeAt = null)
{
    /// <summary>
    /// What <c>spine_runs.wake_at</c> stores: the earliest deadline of the run's waits while its status says it
    /// waits (the recovery sweep brings it back before then), null otherwise (an executing run is swept by its status).
    /// </summary>
    public DateTimeOffset? SweepAt => Status is RunStatus.Sleeping or RunStatus.AwaitingSignal or RunStatus.AwaitingApproval or RunStatus.AwaitingBudget ? WakeAt : null;
}
