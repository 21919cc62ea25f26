using System.Text.Json;
using Spine.Errors;
using Spine.Journal;
using Spine.Recovery;
using Spine.Replay;
using Spine.Runs;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Pipeline;

/// <summary>
/// One context call on its way through the step pipeline: what the workflow asked for, under which step
/// number, and how one attempt of it runs. Stages read it; none changes it (an attempt stage passes a
/// changed <see cref="StepAttempt"/> on instead).
/// </summary>
internal sealed record StepCall
{
    public required JournalKind Kind { get; init; }

    public required int Step { get; init; }

    /// <summary>The step's name as journaled (cleaned).</summary>
    public required string Name { get; init; }

    /// <summary>The journal's outcome of this step, when it has one: the call is answered from it.</summary>
    public JournalRow? Recorded { get; init; }

    /// <summary>The order in which this execution of the workflow gets recorded outcomes back.</summary>
    public required ReplayOrder Replay { get; init; }

    /// <summary>
    /// A call that completes at once and cannot fail (the time, a random value): it has no attempt number and
    /// does not count towards the run's status.
    /// </summary>
    public bool Instant { get; init; }

    /// <summary>How failed attempts are retried (<see cref="RetryPolicy.None"/>: one attempt, whose failure is the outcome).</summary>
    public required RetryPolicy Retry { get; init; }

    /// <summary>The call's own error classification, tried before the built-in one.</summary>
    public Func<Exception, ErrorClass?>? Classify { get; init; }

    /// <summary>Whether a step whose retries are spent waits for an operator instead of failing.</summary>
    public bool EscalateToOperator { get; init; }

    /// <summary>The compensation to register before the first attempt.</summary>
    public CompensationCall? Compensation { get; init; }

    /// <summary>The hash of a tool call's arguments, recorded with its failed attempts (non-determinism checks compare it).</summary>
    public string? ArgumentsHash { get; init; }

    /// <summary>A model call: the keyed chat client to call (null: the default one). A budget may pass on a cheaper one.</summary>
    public string? ChatClient { get; init; }

    /// <summary>A model call: the messages and options it sends (null: not a model call, or a recorded one).</summary>
    public ModelRequest? Model { get; init; }

    /// <summary>What the call holds in its account's budget while it runs (null: nothing).</summary>
    public Budgets.BudgetHold? Budget { get; init; }

    /// <summary>
    /// Rows to journal in the same commit as the call's outcome, right before it, made from the outcome (a budget's
    /// settlement): the outcome is never durable without them. Stages that add rows chain the one they were given.
    /// </summary>
    public Func<StepOutcome, IReadOnlyList<PendingRow>>? WithOutcome { get; init; }

    /// <summary>The tools this call may use, whatever the policies permit (an agent's own list); null: no such limit.</summary>
    public IReadOnlyCollection<string>? AllowedTools { get; init; }

    /// <summary>How long one attempt may take, asked by the call (<see cref="StepOptions.Timeout"/>); null: the tool's or the model's default.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>A tool call: the tool, its arguments and the version asked for (null: not a tool call).</summary>
    public ToolCall? Tool { get; init; }

    /// <summary>The number of the attempt the retry stage is making (over the step's whole journal, from 1).</summary>
    public int Attempt { get; init; } = 1;

    /// <summary>Runs one attempt, after every attempt stage: returns the payload to journal as the step's outcome.</summary>
    public required Func<StepAttempt, Task<string>> Execute { get; init; }
}

/// <summary>
/// The tool a call invokes: its name, arguments, and the version to resolve, read at each attempt (null: the
/// newest), since the run may pin a version while the call waits for a retry.
/// </summary>
internal sealed record ToolCall(string Name, JsonElement Arguments, Func<string?> Version);

/// <summary>What a model call sends.</summary>
internal sealed record ModelRequest(IReadOnlyList<Microsoft.Extensions.AI.ChatMessage> Messages, Microsoft.Extensions.AI.ChatOptions? Options);

/// <summary>One attempt of a call, as attempt stages pass it on.</summary>
internal sealed record StepAttempt(StepCall Call, int Number, CancellationToken Cancellation)
{
    /// <summary>The tool this attempt invokes, once the contract stage resolved it.</summary>
    public RegisteredTool? Tool { get; init; }

    /// <summary>Set once the attempt reaches the call itself (past every attempt stage): from then on it may have had its effect.</summary>
    public AttemptReach Reach { get; init; } = new();
}

/// <summary>Whether an attempt reached its call (shared by the copies the attempt stages make of it).</summary>
internal sealed class AttemptReach
{
    /// <summary>True once the call itself began.</summary>
    public bool Reached { get; set; }
}

/// <summary>
/// A run's cancel reached an attempt in flight (its token fired): thrown by the pipeline in place of the call's
/// <see cref="OperationCanceledException"/>, so that no stage takes it for the call's own failure.
/// </summary>
internal sealed class CallCancelledException(string runId, bool reached, Exception inner)
    : Exception($"Run {runId} was cancelled while the call was in flight{(reached ? "" : ", before it began")}.", inner)
{
    /// <summary>Whether the call itself had begun, so may have had its effect.</summary>
    public bool Reached { get; } = reached;
}

/// <summary>
/// A call's outcome: a payload (success) or an error (failure). Once journaled it has its
/// <see cref="Row"/>; <see cref="Executed"/> says this activation's attempt produced it (not the journal, not an operator).
/// </summary>
internal sealed record StepOutcome(bool Ok, string? Payload, ErrorPayload? Error, int? Attempt, JournalRow? Row, bool Executed)
{
    public static StepOutcome Succeeded(string payload, int attempt) => new(true, payload, null, attempt, null, true);

    public static StepOutcome Failed(ErrorPayload error, int attempt) => new(false, null, error, attempt, null, true);

    public static StepOutcome FromJournal(JournalRow row) => new(row.Ok, row.Ok ? row.Payload : null, row.Ok ? null : RunPayloads.ReadError(row.Payload), row.Attempt, row, false);

    /// <summary>What the journal stores for this outcome.</summary>
    public string? JournalPayload => Ok ? Payload : RunPayloads.Write(Error);
}

/// <summary>The outcome a run's cancel gives a call it reached in flight (see <c>RetryStage</c>): kind <c>cancelled</c>, outcome unknown.</summary>
internal static class InFlightCancel
{
    /// <summary>The error kind (<see cref="RunCancelledException"/>'s).</summary>
    public const string Kind = "cancelled";

    /// <summary>Whether <paramref name="outcome"/> is such an outcome.</summary>
    public static bool Is(JournalRow outcome)
    {
        if (outcome.Ok)
        {
            return false;
        }

        var error = RunPayloads.ReadError(outcome.Payload);
        return error.Kind == Kind && error.OutcomeUnknown && error.Class == ErrorClass.Cancelled.Name();
    }
}
