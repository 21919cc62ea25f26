using System.Text.Json;
using Microsoft.Extensions.AI;
using Spine.Errors;
using Spine.Recovery;
using Spine.Runs;

namespace Spine.Workflows;

/// <summary>
/// Everything a workflow does outside its own memory goes through the context, which journals each
/// call by step number before the workflow sees its outcome. On re-execution (a crash, a deploy) the
/// calls already recorded are answered from the journal instead of running again.
/// </summary>
/// <remarks>
/// Workflow code must be deterministic apart from these calls: no <c>DateTime.Now</c>, no
/// <c>Random</c>, no I/O of its own. A workflow that takes a different path on re-execution is
/// stopped with a <see cref="Spine.Errors.NonDeterminismException"/>.
/// </remarks>
public interface IWorkflowContext
{
    /// <summary>The run id.</summary>
    string RunId { get; }

    /// <summary>The workflow type name.</summary>
    string WorkflowType { get; }

    /// <summary>The pinned workflow version.</summary>
    int WorkflowVersion { get; }

    /// <summary>The account of the run, if any.</summary>
    string? AccountId { get; }

    /// <summary>True while the context answers from the journal (re-execution before the first unrecorded step).</summary>
    bool IsReplaying { get; }

    /// <summary>The run this one was replayed from, if any.</summary>
    RunOrigin? Origin { get; }

    /// <summary>Who started the run (the run's policies apply by this actor's roles); null when the start named none.</summary>
    Identity.SpineActor? StartedBy { get; }

    /// <summary>A named step parameter given at start (or changed by a replay); null when not set.</summary>
    string? GetParameter(string name);

    /// <summary>
    /// Runs an arbitrary side effect once: its JSON-serialisable result is journaled; on re-execution it is
    /// returned from the journal. <paramref name="action"/> receives a <see cref="StepContext"/> whose
    /// <see cref="StepContext.IdempotencyKey"/> is the same on every attempt, so the effect can be deduplicated downstream.
    /// </summary>
    /// <param name="name">The step name (checked on replay).</param>
    /// <param name="action">The side effect.</param>
    /// <param name="options">Retry policy, error classification, compensation and escalation of this step.</param>
    Task<T> RunAsync<T>(string name, Func<StepContext, Task<T>> action, StepOptions? options = null);

    /// <summary>
    /// The version of <paramref name="tool"/> this run calls: the one it pinned at its first call of the tool, else the
    /// one its next call would pin (the newest its policy permits); null when this silo does not register the tool.
    /// </summary>
    string? ToolVersion(string tool);

    /// <summary>Calls a registered tool with arguments that are validated against its input schema; the output against its output schema.</summary>
    /// <param name="tool">The tool name.</param>
    /// <param name="arguments">The arguments, a JSON object.</param>
    /// <param name="version">An exact version, or null for the version this run pinned (at its first call: the newest its policy permits).</param>
    /// <param name="options">Overrides of the tool's retry policy, compensation and escalation for this call.</param>
    Task<JsonElement> CallToolAsync(string tool, JsonElement arguments, string? version = null, StepOptions? options = null);

    /// <summary>One model turn over the silo's <see cref="IChatClient"/>; the response and its token usage are journaled.</summary>
    /// <param name="messages">The conversation so far.</param>
    /// <param name="options">Chat options (tools, temperature, ...).</param>
    /// <param name="clientKey">The keyed chat client to use; null for the default one.</param>
    Task<ChatResponse> CallModelAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, string? clientKey = null, StepOptions? step = null);

    /// <summary>A durable timer: the wake-up time is journaled, so the wait survives restarts and resumes where it left off.</summary>
    Task SleepAsync(TimeSpan duration);

    /// <summary>
    /// Waits durably for a signal named <paramref name="name"/> (<c>ISpineClient.SignalAsync</c>) and returns its
    /// payload. A signal sent before the wait is kept and delivered here; signals of one name are delivered one per
    /// wait, oldest first. The run shows as <see cref="RunStatus.AwaitingSignal"/> meanwhile, and the wait survives
    /// restarts: its deadline is journaled, and the run's index row holds it for the recovery sweep.
    /// </summary>
    /// <param name="name">The signal's name.</param>
    /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> for as long as it takes.</param>
    /// <exception cref="SignalTimeoutException">No such signal arrived before the deadline (journaled; a re-execution throws it again).</exception>
    /// <exception cref="InvalidPayloadException">The signal's payload does not read as <typeparamref name="T"/> (the signal is taken).</exception>
    Task<T> WaitForSignalAsync<T>(string name, TimeSpan timeout);

    /// <summary>
    /// Asks a human to approve and waits durably for the decision: the request (question, proposed action, approver
    /// roles, deadline) is journaled, the run shows as <see cref="RunStatus.AwaitingApproval"/>, and only an actor
    /// holding one of the roles can decide (<c>ISpineClient.DecideApprovalAsync</c>). An undecided request's deadline,
    /// which survives restarts (journaled, and in the run's index row for the recovery sweep), rejects, approves or escalates to other roles as the request says. A rejection is a
    /// decision the workflow reads, not an exception.
    /// </summary>
    Task<Approvals.ApprovalDecision> RequestApprovalAsync(Approvals.ApprovalRequest request);

    /// <summary>The current time, recorded so that re-execution sees the same value.</summary>
    Task<DateTimeOffset> NowAsync();

    /// <summary>A random 64-bit value, recorded so that re-execution sees the same value.</summary>
    Task<long> RandomAsync();

    /// <summary>A new GUID, recorded so that re-execution sees the same value.</summary>
    Task<Guid> NewGuidAsync();
}

/// <summary>What a side effect learns about the step it runs in.</summary>
/// <param name="RunId">The run.</param>
/// <param name="Step">The step number.</param>
/// <param name="Name">The step name.</param>
/// <param name="IdempotencyKey">Stable across retries and re-executions of this step: <c>{runId}/{step}</c>.</param>
/// <param name="CancellationToken">Signalled when the silo shuts the run's activation down.</param>
/// <param name="Attempt">Which attempt this is (from 1).</param>
public sealed record StepContext(string RunId, int Step, string Name, string IdempotencyKey, CancellationToken CancellationToken, int Attempt = 1);

/// <summary>How one step recovers from failure.</summary>
public sealed record StepOptions
{
    /// <summary>The retry policy; null takes the tool's, else <c>Spine:Retry</c> for the step kind.</summary>
    public RetryPolicy? Retry { get; init; }

    /// <summary>Classifies this step's exceptions first (return null to fall back to the defaults).</summary>
    public Func<Exception, ErrorClass?>? ClassifyError { get; init; }

    /// <summary>The tool call that undoes this step once it has succeeded, run if the run later fails or is cancelled.</summary>
    public CompensationCall? Compensation { get; init; }

    /// <summary>Whether exhausting the retries hands the step to an operator; null takes the workflow's <see cref="WorkflowAttribute.EscalateToOperator"/>.</summary>
    public bool? EscalateToOperator { get; init; }

    /// <summary>
    /// For a tool call: the tools it may be (an agent passes the tools it offered its model); any other is denied
    /// by policy, journaled, whatever the run's policies permit. Null: only the policies decide.
    /// </summary>
    public IReadOnlyCollection<string>? AllowedTools { get; init; }

    /// <summary>
    /// For a tool call a model proposed: how confident it was (0..1). A policy's confidence gate makes a call below
    /// its threshold (or without a confidence) wait for approval.
    /// </summary>
    public double? Confidence { get; init; }

    /// <summary>
    /// How long one attempt may take: past it the call's cancellation token fires, and the attempt fails as a transient
    /// timeout whose outcome is unknown (retried; compensated if the run later fails). Null: the tool's own
    /// <see cref="Tools.ToolDefinition.Timeout"/>, for a model call <c>Spine:Timeouts</c>, for a step no limit.
    /// </summary>
    public TimeSpan? Timeout { get; init; }
}

/// <summary>A compensating tool call: it receives its own idempotency key (<c>{runId}/{step}/compensate</c>).</summary>
/// <param name="Tool">The tool name.</param>
/// <param name="Arguments">Its arguments.</param>
/// <param name="Version">An exact tool version, or null for the newest.</param>
public sealed record CompensationCall(string Tool, JsonElement Arguments, string? Version = null);

/// <summary>A code-first workflow.</summary>
/// <typeparam name="TInput">The input, deserialised from the run's JSON input.</typeparam>
/// <typeparam name="TOutput">The result, serialised to JSON when the run completes.</typeparam>
public interface IWorkflow<TInput, TOutput>
{
    /// <summary>The workflow body.</summary>
    Task<TOutput> RunAsync(IWorkflowContext context, TInput input);
}

/// <summary>Names a workflow class: type name and version.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class WorkflowAttribute(string name) : Attribute
{
    /// <summary>The type name runs are started with.</summary>
    public string Name { get; } = name;

    /// <summary>The version; register a new version when the step sequence changes. Default 1.</summary>
    public int Version { get; set; } = 1;

    /// <summary>When a step exhausts its retries: true pauses the run for an operator (retry, skip, fail); false fails it. Default false.</summary>
    public bool EscalateToOperator { get; set; }
}
