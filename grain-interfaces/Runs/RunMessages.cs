using Spine.Identity;

namespace Spine.Runs;

/// <summary>A request to start a workflow run.</summary>
/// <param name="WorkflowType">The registered workflow type name, e.g. <c>"agent"</c>.</param>
/// <param name="InputJson">The workflow input as JSON text.</param>
/// <param name="WorkflowVersion">The workflow version to run; <c>null</c> takes the newest registered version.</param>
/// <param name="IdempotencyKey">A caller-chosen key: starting the same key twice (per account) returns the same run.</param>
/// <param name="AccountId">The account the run is billed to and listed under.</param>
/// <param name="Parameters">Named step parameters the workflow reads with <c>ctx.GetParameter</c>; a replay can change them.</param>
/// <param name="Actor">Who starts the run (the client's configured actor when null); the run records it.</param>
/// <param name="Budget">The run's own ceilings (null: those configured for its workflow type, if any); its account's apply too.</param>
[GenerateSerializer, Immutable, Alias("spine.StartRunRequest")]
public sealed record StartRunRequest(
    [property: Id(0)] string WorkflowType,
    [property: Id(1)] string InputJson,
    [property: Id(2)] int? WorkflowVersion = null,
    [property: Id(3)] string? IdempotencyKey = null,
    [property: Id(4)] string? AccountId = null,
    [property: Id(5)] IReadOnlyDictionary<string, string>? Parameters = null,
    [property: Id(6)] SpineActor? Actor = null,
    [property: Id(7)] Budgets.RunBudget? Budget = null);

/// <summary>A request to fork a new run from step <paramref name="FromStep"/> of an earlier run.</summary>
/// <param name="SourceRunId">The run to fork from (completed, failed, cancelled, dead-lettered or discarded).</param>
/// <param name="FromStep">The first step to execute again; steps before it are reused from the source journal, up to the first approval the source decided (approvals are asked again, so the steps from it on run again too). Null: the source's failing step (or 1).</param>
/// <param name="InputJson">A changed input; null keeps the source's input.</param>
/// <param name="Parameters">Changed step parameters; null keeps the source's.</param>
/// <param name="IdempotencyKey">Makes the replay itself idempotent (per account).</param>
/// <param name="Actor">Who replays (the client's configured actor when null): the replay records it as who started it, and its policies apply by its roles.</param>
[GenerateSerializer, Immutable, Alias("spine.ReplayRequest")]
public sealed record ReplayRequest(
    [property: Id(0)] string SourceRunId,
    [property: Id(1)] int? FromStep = null,
    [property: Id(2)] string? InputJson = null,
    [property: Id(3)] IReadOnlyDictionary<string, string>? Parameters = null,
    [property: Id(4)] string? IdempotencyKey = null,
    [property: Id(5)] SpineActor? Actor = null);

/// <summary>A signal to a run: a named message its workflow receives with <c>ctx.WaitForSignalAsync</c>.</summary>
/// <param name="Name">The signal's name: printable text, not starting with <c>spine.</c> (Spine's own signals, such as approvals).</param>
/// <param name="PayloadJson">The signal's payload as JSON text.</param>
/// <param name="SignalId">
/// A caller-chosen id that makes sending idempotent: a second signal with the same id to the same run is not
/// journaled again. Null: every send is a new signal.
/// </param>
/// <param name="Actor">Who sends it (the client's configured actor when null); journaled with the signal.</param>
[GenerateSerializer, Immutable, Alias("spine.SignalRequest")]
public sealed record SignalRequest(
    [property: Id(0)] string Name,
    [property: Id(1)] string PayloadJson,
    [property: Id(2)] string? SignalId = null,
    [property: Id(3)] SpineActor? Actor = null);

/// <summary>Where a replayed run came from.</summary>
/// <param name="SourceRunId">The source run.</param>
/// <param name="FromStep">The step the replay was asked to execute from (it also re-executed any steps after an approval before it).</param>
[GenerateSerializer, Immutable, Alias("spine.RunOrigin")]
public sealed record RunOrigin([property: Id(0)] string SourceRunId, [property: Id(1)] int FromStep);

/// <summary>What an operator decides for a run in <see cref="RunStatus.AwaitingOperator"/>.</summary>
public enum OperatorAction
{
    /// <summary>Try the step again, with a fresh retry budget.</summary>
    Retry,

    /// <summary>Skip the step: record <see cref="OperatorDecision.ResultJson"/> as its result and go on.</summary>
    Skip,

    /// <summary>Fail the run (compensations run).</summary>
    Fail,
}

/// <summary>An operator's decision on an escalated step.</summary>
/// <param name="Action">Retry, skip or fail.</param>
/// <param name="ResultJson">For <see cref="OperatorAction.Skip"/>: the step's result as JSON.</param>
/// <param name="Reason">Why, for the journal.</param>
/// <param name="Actor">Who decides (the client's configured actor when null); journaled with the decision.</param>
/// <param name="Step">The escalated step decided on; may be null while the run has only one escalated step.</param>
[GenerateSerializer, Immutable, Alias("spine.OperatorDecision")]
public sealed record OperatorDecision(
    [property: Id(0)] OperatorAction Action,
    [property: Id(1)] string? ResultJson = null,
    [property: Id(2)] string? Reason = null,
    [property: Id(5)] SpineActor? Actor = null,
    [property: Id(4)] int? Step = null);

/// <summary>The step a run escalated to an operator.</summary>
/// <param name="Step">The step number.</param>
/// <param name="StepName">The step name.</param>
/// <param name="Error">The last error of the step.</param>
[GenerateSerializer, Immutable, Alias("spine.Escalation")]
public sealed record Escalation([property: Id(0)] int Step, [property: Id(1)] string StepName, [property: Id(2)] RunError Error);

/// <summary>What went wrong in a failed run or step.</summary>
/// <param name="Kind">A stable machine-readable error kind, e.g. <c>"terminal"</c>, <c>"non_determinism"</c>, <c>"schema_validation"</c>.</param>
/// <param name="Message">A human-readable message naming the run, step and tool involved.</param>
/// <param name="Step">The workflow step number that failed, when a step failed.</param>
/// <param name="StepName">The name of that step.</param>
/// <param name="ExceptionType">The .NET type name of the exception that caused it.</param>
[GenerateSerializer, Immutable, Alias("spine.RunError")]
public sealed record RunError(
    [property: Id(0)] string Kind,
    [property: Id(1)] string Message,
    [property: Id(2)] int? Step = null,
    [property: Id(3)] string? StepName = null,
    [property: Id(4)] string? ExceptionType = null);

/// <summary>A snapshot of a run.</summary>
[GenerateSerializer, Immutable, Alias("spine.RunInfo")]
public sealed record RunInfo
{
    /// <summary>The run id (the key of its grain).</summary>
    [Id(0)] public required string RunId { get; init; }

    /// <summary>The workflow type name.</summary>
    [Id(1)] public required string WorkflowType { get; init; }

    /// <summary>The pinned workflow version.</summary>
    [Id(2)] public int WorkflowVersion { get; init; }

    /// <summary>The account the run belongs to, if any.</summary>
    [Id(3)] public string? AccountId { get; init; }

    /// <summary>The current status.</summary>
    [Id(4)] public RunStatus Status { get; init; }

    /// <summary>The result as JSON text once <see cref="RunStatus.Completed"/>.</summary>
    [Id(5)] public string? ResultJson { get; init; }

    /// <summary>The error once <see cref="RunStatus.Failed"/> or <see cref="RunStatus.Cancelled"/>.</summary>
    [Id(6)] public RunError? Error { get; init; }

    /// <summary>When the run was created.</summary>
    [Id(7)] public DateTimeOffset CreatedAt { get; init; }

    /// <summary>When the run last changed status.</summary>
    [Id(8)] public DateTimeOffset UpdatedAt { get; init; }

    /// <summary>How many workflow steps have a recorded outcome.</summary>
    [Id(9)] public int StepsRecorded { get; init; }

    /// <summary>The idempotency key the run was started with, if any.</summary>
    [Id(10)] public string? IdempotencyKey { get; init; }

    /// <summary>The (lowest-numbered) step waiting for an operator, when <see cref="RunStatus.AwaitingOperator"/>.</summary>
    [Id(11)] public Escalation? Escalation { get; init; }

    /// <summary>Every step waiting for an operator, in step order (parallel steps may escalate together).</summary>
    [Id(13)] public IReadOnlyList<Escalation> Escalations { get; init; } = [];

    /// <summary>The run this one was replayed from, if any.</summary>
    [Id(12)] public RunOrigin? Origin { get; init; }

    /// <summary>Who started the run, when the start named an actor.</summary>
    [Id(14)] public SpineActor? StartedBy { get; init; }

    /// <summary>The approvals the run waits for, in step order.</summary>
    [Id(15)] public IReadOnlyList<Spine.Approvals.PendingApproval> Approvals { get; init; } = [];
}

/// <summary>A filter for listing runs. Every set member must match.</summary>
[GenerateSerializer, Immutable, Alias("spine.RunQuery")]
public sealed record RunQuery
{
    /// <summary>Only runs in this status.</summary>
    [Id(0)] public RunStatus? Status { get; init; }

    /// <summary>Only runs of this workflow type.</summary>
    [Id(1)] public string? WorkflowType { get; init; }

    /// <summary>Only runs of this account.</summary>
    [Id(2)] public string? AccountId { get; init; }

    /// <summary>At most this many runs, newest first. Default 100, at most 10,000.</summary>
    [Id(3)] public int Limit { get; init; } = 100;
}

/// <summary>One row of a run's journal, as shown to operators.</summary>
[GenerateSerializer, Immutable, Alias("spine.JournalEntryView")]
public sealed record JournalEntryView
{
    /// <summary>Position of the row in the run's journal, from 0.</summary>
    [Id(0)] public int Seq { get; init; }

    /// <summary>The event kind, e.g. <c>RunStarted</c>, <c>Step</c>, <c>Tool</c>, <c>Model</c>, <c>Timer</c>.</summary>
    [Id(1)] public required string Kind { get; init; }

    /// <summary>The workflow step number, for step rows.</summary>
    [Id(2)] public int? Step { get; init; }

    /// <summary>The step or event name.</summary>
    [Id(3)] public required string Name { get; init; }

    /// <summary><c>ok</c> or <c>error</c>.</summary>
    [Id(4)] public required string Outcome { get; init; }

    /// <summary>The recorded payload as JSON text.</summary>
    [Id(5)] public string? PayloadJson { get; init; }

    /// <summary>When the row was recorded.</summary>
    [Id(6)] public DateTimeOffset RecordedAt { get; init; }

    /// <summary>The row's hash (hex), chained to the previous row of the run.</summary>
    [Id(7)] public required string Hash { get; init; }

    /// <summary>For step outcomes and failed attempts: which attempt (from 1).</summary>
    [Id(8)] public int? Attempt { get; init; }
}
