namespace Spine.Errors;

/// <summary>
/// The base of every error Spine raises on purpose. <see cref="Kind"/> is a stable, machine-readable
/// name that is also what the journal and <see cref="Spine.Runs.RunError.Kind"/> record.
/// </summary>
[GenerateSerializer, Alias("spine.SpineException")]
public abstract class SpineException : Exception
{
    /// <summary>Creates the exception.</summary>
    protected SpineException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }

    /// <summary>The stable error kind, e.g. <c>"unknown_tool"</c>.</summary>
    public abstract string Kind { get; }
}

/// <summary>No workflow with this type name (and version) is registered on the silo.</summary>
[GenerateSerializer, Alias("spine.UnknownWorkflowException")]
public sealed class UnknownWorkflowException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public UnknownWorkflowException(string workflowType, int? version)
        : base(version is null
            ? $"Unknown workflow type '{workflowType}': no workflow of that name is registered."
            : $"Unknown workflow '{workflowType}' version {version}: that version is not registered.")
    {
        WorkflowType = workflowType;
        Version = version;
    }

    /// <summary>The requested type name.</summary>
    [Id(0)] public string WorkflowType { get; private set; }

    /// <summary>The requested version, if one was named.</summary>
    [Id(1)] public int? Version { get; private set; }

    /// <inheritdoc />
    public override string Kind => "unknown_workflow";
}

/// <summary>A workflow or a model asked for a tool that is not registered.</summary>
[GenerateSerializer, Alias("spine.UnknownToolException")]
public sealed class UnknownToolException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public UnknownToolException(string tool, string? version)
        : base(version is null
            ? $"Unknown tool '{tool}': no tool of that name is registered."
            : $"Unknown tool '{tool}' version {version}: that version is not registered.")
    {
        Tool = tool;
        Version = version;
    }

    /// <summary>The requested tool name.</summary>
    [Id(0)] public string Tool { get; private set; }

    /// <summary>The requested version, if one was named.</summary>
    [Id(1)] public string? Version { get; private set; }

    /// <inheritdoc />
    public override string Kind => "unknown_tool";
}

/// <summary>A tool's input or output does not match its JSON Schema.</summary>
[GenerateSerializer, Alias("spine.SchemaValidationException")]
public sealed class SchemaValidationException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public SchemaValidationException(string tool, string version, string direction, IReadOnlyList<string> errors)
        : base($"Tool '{tool}' {version}: {direction} does not match its schema: {string.Join("; ", errors)}")
    {
        Tool = tool;
        Version = version;
        Direction = direction;
        Errors = errors;
    }

    /// <summary>The tool name.</summary>
    [Id(0)] public string Tool { get; private set; }

    /// <summary>The tool version.</summary>
    [Id(1)] public string Version { get; private set; }

    /// <summary><c>"input"</c> or <c>"output"</c>.</summary>
    [Id(2)] public string Direction { get; private set; }

    /// <summary>Each violation, as JSON-pointer location and message.</summary>
    [Id(3)] public IReadOnlyList<string> Errors { get; private set; }

    /// <inheritdoc />
    public override string Kind => "schema_validation";
}

/// <summary>A payload (input, arguments, result) is not valid JSON or not of the expected shape.</summary>
[GenerateSerializer, Alias("spine.InvalidPayloadException")]
public sealed class InvalidPayloadException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public InvalidPayloadException(string what, string detail)
        : base($"Invalid {what}: {detail}")
    {
        What = what;
        Detail = detail;
    }

    /// <summary>Which payload, e.g. <c>"workflow input"</c>.</summary>
    [Id(0)] public string What { get; private set; }

    /// <summary>What is wrong with it.</summary>
    [Id(1)] public string Detail { get; private set; }

    /// <inheritdoc />
    public override string Kind => "invalid_payload";
}

/// <summary>A payload is over the configured ceiling (<c>Spine:MaxPayloadBytes</c>).</summary>
[GenerateSerializer, Alias("spine.PayloadTooLargeException")]
public sealed class PayloadTooLargeException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public PayloadTooLargeException(string what, long sizeBytes, long limitBytes)
        : base($"The {what} is {sizeBytes:N0} bytes, over the ceiling of {limitBytes:N0} bytes (Spine:MaxPayloadBytes).")
    {
        What = what;
        SizeBytes = sizeBytes;
        LimitBytes = limitBytes;
    }

    /// <summary>Which payload.</summary>
    [Id(0)] public string What { get; private set; }

    /// <summary>Its size in UTF-8 bytes.</summary>
    [Id(1)] public long SizeBytes { get; private set; }

    /// <summary>The configured ceiling.</summary>
    [Id(2)] public long LimitBytes { get; private set; }

    /// <inheritdoc />
    public override string Kind => "payload_too_large";
}

/// <summary>
/// Re-executing a workflow produced a different call than the journal holds at the same step:
/// the code changed in a way that is not replay-safe. The run stops; nothing is re-executed.
/// </summary>
[GenerateSerializer, Alias("spine.NonDeterminismException")]
public sealed class NonDeterminismException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public NonDeterminismException(string runId, int step, string recorded, string requested)
        : base($"Run {runId}: non-determinism at step {step}: the journal records {recorded} but the workflow now calls {requested}. " +
               "The workflow code changed in a way that is not replay-safe; register the new code as a new workflow version.")
    {
        RunId = runId;
        Step = step;
        Recorded = recorded;
        Requested = requested;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The step number.</summary>
    [Id(1)] public int Step { get; private set; }

    /// <summary>What the journal holds at that step (kind and name).</summary>
    [Id(2)] public string Recorded { get; private set; }

    /// <summary>What the workflow asked for instead.</summary>
    [Id(3)] public string Requested { get; private set; }

    /// <inheritdoc />
    public override string Kind => "non_determinism";
}

/// <summary>No run has this id.</summary>
[GenerateSerializer, Alias("spine.RunNotFoundException")]
public sealed class RunNotFoundException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public RunNotFoundException(string runId)
        : base($"Run {runId} does not exist.")
    {
        RunId = runId;
    }

    /// <summary>The run id.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <inheritdoc />
    public override string Kind => "run_not_found";
}

/// <summary>
/// PostgreSQL could not be reached or refused the operation. For a write the outcome may be unknown (an
/// acknowledgement lost with the connection); Spine resolves that by reading back before it reports it.
/// </summary>
[GenerateSerializer, Alias("spine.StorageUnavailableException")]
public sealed class StorageUnavailableException : SpineException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="operation">What Spine was doing.</param>
    /// <param name="detail">What the database or driver said.</param>
    /// <param name="innerException">The driver's exception.</param>
    /// <param name="transient">Whether the same operation may succeed later (the server was unreachable or restarting).</param>
    public StorageUnavailableException(string operation, string detail, Exception? innerException = null, bool transient = true)
        : base($"Storage unavailable during {operation}: {detail}", innerException as SpineException)
    {
        Operation = operation;
        Detail = detail;
        IsTransient = transient;
        Cause = innerException;
    }

    /// <summary>
    /// The driver's exception, inside the silo only: it does not cross grain calls (a driver's exception types
    /// have no wire format), so a client sees <see cref="Detail"/>, which quotes it.
    /// </summary>
    [field: NonSerialized]
    public Exception? Cause { get; }

    /// <summary>True when the same operation may succeed later; false when the server or driver refused it.</summary>
    [Id(2)] public bool IsTransient { get; private set; }

    /// <summary>What Spine was doing.</summary>
    [Id(0)] public string Operation { get; private set; }

    /// <summary>What the database or driver said.</summary>
    [Id(1)] public string Detail { get; private set; }

    /// <inheritdoc />
    public override string Kind => "storage_unavailable";
}

/// <summary>
/// An idempotent start reused a key (per account) with a different request: another workflow type,
/// version, input or parameters. The first run is left unchanged.
/// </summary>
[GenerateSerializer, Alias("spine.IdempotencyKeyConflictException")]
public sealed class IdempotencyKeyConflictException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public IdempotencyKeyConflictException(string runId, string? idempotencyKey, string difference)
        : base($"Run {runId} was started with idempotency key '{idempotencyKey}' and a different request ({difference}); use a new key for a different request.")
    {
        RunId = runId;
        IdempotencyKey = idempotencyKey;
        Difference = difference;
    }

    /// <summary>The run the key already names.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The key.</summary>
    [Id(1)] public string? IdempotencyKey { get; private set; }

    /// <summary>What differs from the first request, e.g. <c>input</c>.</summary>
    [Id(2)] public string Difference { get; private set; }

    /// <inheritdoc />
    public override string Kind => "idempotency_key_conflict";
}

/// <summary>An identifier (an account id, an idempotency key) holds characters Spine refuses: control characters or broken UTF-16.</summary>
[GenerateSerializer, Alias("spine.InvalidIdentifierException")]
public sealed class InvalidIdentifierException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public InvalidIdentifierException(string what, int position)
        : base($"The {what} holds a control character or an unpaired surrogate at position {position}; use printable text.")
    {
        What = what;
        Position = position;
    }

    /// <summary>Which identifier, e.g. <c>account id</c>.</summary>
    [Id(0)] public string What { get; private set; }

    /// <summary>The position of the first refused character.</summary>
    [Id(1)] public int Position { get; private set; }

    /// <inheritdoc />
    public override string Kind => "invalid_identifier";
}

/// <summary>A journal append found its row already written: another activation of the run wrote it.</summary>
[GenerateSerializer, Alias("spine.JournalConflictException")]
public sealed class JournalConflictException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public JournalConflictException(string runId, int seq)
        : base($"Run {runId}: journal row {seq} was already written by another activation; this activation stops.")
    {
        RunId = runId;
        Seq = seq;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The journal position that was taken.</summary>
    [Id(1)] public int Seq { get; private set; }

    /// <inheritdoc />
    public override string Kind => "journal_conflict";
}

/// <summary>A step of the workflow failed; thrown into workflow code, which may catch it.</summary>
[GenerateSerializer, Alias("spine.StepFailedException")]
public sealed class StepFailedException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public StepFailedException(string runId, int step, string stepName, string errorKind, string errorMessage, string? exceptionType,
        string errorClass = "terminal", int attempts = 1, bool retriesExhausted = false)
        : base($"Run {runId}: step {step} '{stepName}' failed ({errorKind}{(retriesExhausted ? $", retries exhausted after {attempts} attempts" : "")}): {errorMessage}")
    {
        RunId = runId;
        Step = step;
        StepName = stepName;
        ErrorKind = errorKind;
        ErrorMessage = errorMessage;
        ExceptionType = exceptionType;
        ErrorClass = errorClass;
        Attempts = attempts;
        RetriesExhausted = retriesExhausted;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The step number.</summary>
    [Id(1)] public int Step { get; private set; }

    /// <summary>The step name.</summary>
    [Id(2)] public string StepName { get; private set; }

    /// <summary>The kind of the underlying error.</summary>
    [Id(3)] public string ErrorKind { get; private set; }

    /// <summary>The underlying error's message.</summary>
    [Id(4)] public string ErrorMessage { get; private set; }

    /// <summary>The .NET type of the underlying error.</summary>
    [Id(5)] public string? ExceptionType { get; private set; }

    /// <summary>The error class of the last attempt (see <see cref="Spine.Errors.ErrorClass"/>), e.g. <c>transient</c>.</summary>
    [Id(6)] public string ErrorClass { get; private set; }

    /// <summary>How many attempts were made.</summary>
    [Id(7)] public int Attempts { get; private set; }

    /// <summary>True when a transient failure ran out of attempts (the run goes to the dead-letter queue if uncaught).</summary>
    [Id(8)] public bool RetriesExhausted { get; private set; }

    /// <inheritdoc />
    public override string Kind => "step_failed";
}

/// <summary>The run was cancelled; thrown into workflow code at the next step boundary.</summary>
[GenerateSerializer, Alias("spine.RunCancelledException")]
public sealed class RunCancelledException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public RunCancelledException(string runId, string? reason)
        : base($"Run {runId} was cancelled{(reason is null ? "" : ": " + reason)}.")
    {
        RunId = runId;
        Reason = reason;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>Why, as given by the caller.</summary>
    [Id(1)] public string? Reason { get; private set; }

    /// <inheritdoc />
    public override string Kind => "cancelled";
}

/// <summary>A run the caller awaited ended Failed or Cancelled.</summary>
[GenerateSerializer, Alias("spine.RunFailedException")]
public sealed class RunFailedException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public RunFailedException(string runId, Spine.Runs.RunStatus status, Spine.Runs.RunError? error)
        : base($"Run {runId} ended {status}: {error?.Message ?? "no error recorded"}")
    {
        RunId = runId;
        Status = status;
        Error = error;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>Failed or Cancelled.</summary>
    [Id(1)] public Spine.Runs.RunStatus Status { get; private set; }

    /// <summary>The recorded error.</summary>
    [Id(2)] public Spine.Runs.RunError? Error { get; private set; }

    /// <inheritdoc />
    public override string Kind => "run_failed";
}

/// <summary>
/// A run's journal does not verify: a row was edited, deleted or forged, or the run's journal, head anchor and
/// index disagree. The run is quarantined: it never executes again, whatever asks it to.
/// </summary>
[GenerateSerializer, Alias("spine.JournalTamperedException")]
public sealed class JournalTamperedException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public JournalTamperedException(string runId, int? firstBadSeq, string problem)
        : base($"Run {runId} is quarantined: its journal does not verify{(firstBadSeq is { } seq ? $" at row {seq}" : "")}: {problem}")
    {
        RunId = runId;
        FirstBadSeq = firstBadSeq;
        Problem = problem;
    }

    /// <summary>The run id.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The first row that does not verify, when one does not.</summary>
    [Id(1)] public int? FirstBadSeq { get; private set; }

    /// <summary>What does not verify.</summary>
    [Id(2)] public string Problem { get; private set; }

    /// <inheritdoc />
    public override string Kind => "journal_tampered";
}

/// <summary>
/// A run's journal holds rows signed with a key this silo is not configured with: the silos disagree on
/// <c>Spine:Audit</c> (add a new key to <c>RetiredKeys</c> on every silo before any signs with it).
/// </summary>
[GenerateSerializer, Alias("spine.AuditKeyUnknownException")]
public sealed class AuditKeyUnknownException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public AuditKeyUnknownException(string runId, string keyId)
        : base($"Run {runId} has journal rows signed with key {keyId}, which this silo does not hold (Spine:Audit:Key or Spine:Audit:RetiredKeys).")
    {
        RunId = runId;
        KeyId = keyId;
    }

    /// <summary>The run id.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The fingerprint of the missing key.</summary>
    [Id(1)] public string KeyId { get; private set; }

    /// <inheritdoc />
    public override string Kind => "audit_key_unknown";
}

/// <summary>
/// A workflow's wait for a signal (<c>ctx.WaitForSignalAsync</c>) reached its deadline with no signal of that name;
/// thrown into the workflow, which may catch it. The timeout is journaled, so a re-execution throws it again.
/// </summary>
[GenerateSerializer, Alias("spine.SignalTimeoutException")]
public sealed class SignalTimeoutException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public SignalTimeoutException(string runId, int step, string name, DateTimeOffset deadline)
        : base($"Run {runId}: no signal '{name}' arrived by {deadline:O} (step {step}).")
    {
        RunId = runId;
        Step = step;
        Name = name;
        Deadline = deadline;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The step that waited.</summary>
    [Id(1)] public int Step { get; private set; }

    /// <summary>The signal's name.</summary>
    [Id(2)] public string Name { get; private set; }

    /// <summary>When the wait ended.</summary>
    [Id(3)] public DateTimeOffset Deadline { get; private set; }

    /// <inheritdoc />
    public override string Kind => "signal_timeout";
}

/// <summary>An actor tried to decide an approval without holding a role the approval accepts (or named no actor).</summary>
[GenerateSerializer, Alias("spine.ApprovalForbiddenException")]
public sealed class ApprovalForbiddenException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public ApprovalForbiddenException(string runId, int step, string? actor, string detail)
        : base($"Run {runId}, approval at step {step}: {actor ?? "an anonymous caller"} may not decide: {detail}")
    {
        RunId = runId;
        Step = step;
        Actor = actor;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The approval's step.</summary>
    [Id(1)] public int Step { get; private set; }

    /// <summary>Who tried.</summary>
    [Id(2)] public string? Actor { get; private set; }

    /// <inheritdoc />
    public override string Kind => "approval_forbidden";
}

/// <summary>
/// A tool call that needed a human's approval (by the tool's definition, a policy, or the confidence gate) was
/// rejected, or its deadline rejected it. The tool was not called; the request and the decision are journaled.
/// </summary>
[GenerateSerializer, Alias("spine.ToolCallRejectedException")]
public sealed class ToolCallRejectedException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public ToolCallRejectedException(string runId, int approvalStep, string tool, bool timedOut, string? decidedBy, string? comment)
        : base($"Run {runId}: the call of '{tool}' was {(timedOut ? "rejected by its approval's deadline" : $"rejected by {decidedBy ?? "an approver"}")} (approval at step {approvalStep}){(comment is null ? "" : $": {comment}")}")
    {
        RunId = runId;
        ApprovalStep = approvalStep;
        Tool = tool;
        TimedOut = timedOut;
        DecidedBy = decidedBy;
        Comment = comment;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The approval's step (the tool call would have been the next).</summary>
    [Id(1)] public int ApprovalStep { get; private set; }

    /// <summary>The tool.</summary>
    [Id(2)] public string Tool { get; private set; }

    /// <summary>True when the deadline rejected it.</summary>
    [Id(3)] public bool TimedOut { get; private set; }

    /// <summary>Who rejected it.</summary>
    [Id(4)] public string? DecidedBy { get; private set; }

    /// <summary>The approver's comment.</summary>
    [Id(5)] public string? Comment { get; private set; }

    /// <inheritdoc />
    public override string Kind => TimedOut ? "approval_timed_out" : "approval_rejected";
}

/// <summary>A decision for an approval the run does not wait for: none is pending, or it was decided already.</summary>
[GenerateSerializer, Alias("spine.ApprovalNotPendingException")]
public sealed class ApprovalNotPendingException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public ApprovalNotPendingException(string runId, Spine.Runs.RunStatus status, string detail)
        : base($"Run {runId} ({status}): {detail}")
    {
        RunId = runId;
        Status = status;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The run's status when the decision came.</summary>
    [Id(1)] public Spine.Runs.RunStatus Status { get; private set; }

    /// <inheritdoc />
    public override string Kind => "approval_not_pending";
}

/// <summary>
/// A call outside the run's policy (a tool, version, argument or call count it does not permit, or a chat client it
/// does not allow). It never reached the tool or model; the denial and the rule that denied it are journaled.
/// </summary>
[GenerateSerializer, Alias("spine.PolicyDeniedException")]
public sealed class PolicyDeniedException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public PolicyDeniedException(string runId, int step, string target, string rule, string reason)
        : base($"Run {runId}, step {step}: '{target}' is not permitted by policy ({rule}): {reason}")
    {
        RunId = runId;
        Step = step;
        Target = target;
        Rule = rule;
        Reason = reason;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The denied step.</summary>
    [Id(1)] public int Step { get; private set; }

    /// <summary>The tool or chat client the call was for.</summary>
    [Id(2)] public string Target { get; private set; }

    /// <summary>The rule that denied it (its name or its setting path), or <c>deny-by-default</c>.</summary>
    [Id(3)] public string Rule { get; private set; }

    /// <summary>Why.</summary>
    [Id(4)] public string Reason { get; private set; }

    /// <inheritdoc />
    public override string Kind => "policy_denied";
}

/// <summary>
/// A model or tool call its run's or its account's budget has no room for, whose workflow stops rather than waits
/// (class <c>budget_exhausted</c>). Nothing was called; the refusal and the ceiling are journaled.
/// </summary>
[GenerateSerializer, Alias("spine.BudgetExhaustedException")]
public sealed class BudgetExhaustedException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public BudgetExhaustedException(string runId, int step, string target, string scope, string reason)
        : base($"Run {runId}, step {step}: '{target}' does not fit the {scope}'s budget: {reason}")
    {
        RunId = runId;
        Step = step;
        Target = target;
        Scope = scope;
        Reason = reason;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>The refused step.</summary>
    [Id(1)] public int Step { get; private set; }

    /// <summary>The chat client or tool the call was for.</summary>
    [Id(2)] public string Target { get; private set; }

    /// <summary>Whose budget: <c>run</c> or <c>account</c>.</summary>
    [Id(3)] public string Scope { get; private set; }

    /// <summary>Which ceiling and by how much.</summary>
    [Id(4)] public string Reason { get; private set; }

    /// <inheritdoc />
    public override string Kind => "budget_exhausted";
}

/// <summary>No budget was ever set or spent for this account.</summary>
[GenerateSerializer, Alias("spine.UnknownAccountException")]
public sealed class UnknownAccountException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public UnknownAccountException(string accountId)
        : base($"Account '{accountId}' has no budget: none was set and nothing was spent (spine budgets set {accountId} ...).")
    {
        AccountId = accountId;
    }

    /// <summary>The account.</summary>
    [Id(0)] public string AccountId { get; private set; }

    /// <inheritdoc />
    public override string Kind => "unknown_account";
}
