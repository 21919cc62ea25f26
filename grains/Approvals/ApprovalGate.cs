using System.Globalization;
using System.Text.Json;
using Spine.Errors;
using Spine.Identity;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;
using Spine.Signals;
using Spine.Workflows;

namespace Spine.Approvals;

/// <summary>What an <see cref="JournalKind.ApprovalRequested"/> row records.</summary>
internal sealed record ApprovalRequestedPayload(
    string RequestHash,
    string Question,
    string? ProposedActionJson,
    IReadOnlyList<string> ApproverRoles,
    DateTimeOffset Deadline,
    ApprovalTimeoutAction OnTimeout,
    ApprovalEscalation? EscalateTo);

/// <summary>What an <see cref="JournalKind.ApprovalEscalated"/> row records: who may decide now, until when, and what then.</summary>
internal sealed record ApprovalEscalatedPayload(IReadOnlyList<string> ApproverRoles, DateTimeOffset Deadline, ApprovalTimeoutAction OnTimeout);

/// <summary>What an <see cref="JournalKind.Approval"/> outcome records: the decision, on the request of that hash.</summary>
internal sealed record ApprovalOutcomePayload(ApprovalDecision Decision, string RequestHash);

/// <summary>An approver's decision, as the payload of the approval's signal.</summary>
internal sealed record ApprovalVerdictPayload(bool Approve, string Role, string? Comment);

/// <summary>An approval a run waits for, as its journal folds to.</summary>
internal sealed class ApprovalWait
{
    public required int Step { get; init; }

    public required string Name { get; init; }

    public required ApprovalRequestedPayload Request { get; init; }

    public required DateTimeOffset RequestedAt { get; init; }

    public IReadOnlyList<string> ApproverRoles { get; set; } = [];

    public DateTimeOffset Deadline { get; set; }

    public ApprovalTimeoutAction OnTimeout { get; set; }

    public bool Escalated { get; set; }

    /// <summary>An approver's decision is journaled (its outcome may not be yet): no second one is taken.</summary>
    public bool Decided { get; set; }

    public PendingApproval ToPending(string runId, string? accountId) => new()
    {
        RunId = runId,
        AccountId = accountId,
        Step = Step,
        Name = Name,
        Question = Request.Question,
        ProposedActionJson = Request.ProposedActionJson,
        ApproverRoles = ApproverRoles,
        Deadline = Deadline,
        RequestedAt = RequestedAt,
        Escalated = Escalated,
    };
}

/// <summary>
/// Human approval as a durable wait: the request is journaled with its approver roles and deadline, the run waits
/// in <see cref="RunStatus.AwaitingApproval"/>, and a decision is a signal of Spine's own (<c>spine.approval.{step}</c>)
/// that only an actor holding an approver role can send. An undecided approval's deadline (in the run's index row, for the
/// recovery sweep) rejects, approves, or escalates to other roles with a deadline of their own.
/// </summary>
internal static class ApprovalGate
{
    private const string SignalPrefix = SignalInbox.ReservedPrefix + "approval.";

    /// <summary>The request-context key under which a run's own execution marks the grain calls it makes.</summary>
    public const string CallerRunKey = "spine.run";

    /// <summary>The longest an approver may be given (a deadline is a time, and times end).</summary>
    private static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(3650);

    /// <summary>The name of the signal that carries the decision on the approval at <paramref name="step"/>.</summary>
    public static string SignalName(int step) => SignalPrefix + step.ToString(CultureInfo.InvariantCulture);

    /// <summary>The step whose decision a signal of this name carries, or null when it is not an approval's.</summary>
    public static int? StepOf(string name) =>
        name.StartsWith(SignalPrefix, StringComparison.Ordinal)
        && int.TryParse(name.AsSpan(SignalPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var step) ? step : null;

    /// <summary>Refuses a request that could never be decided, with a typed error naming what is wrong.</summary>
    public static void Check(ApprovalRequest request, int maxBytes)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (string.IsNullOrWhiteSpace(request.Name))
        {
            throw new InvalidIdentifierException("approval name", 0);
        }

        RunIds.CheckIdentifier(request.Name, "approval name");
        CheckRoles(request.ApproverRoles, $"approver roles of approval '{request.Name}'");
        RunPayloads.CheckSize(request.Question ?? "", $"question of approval '{request.Name}'", maxBytes);
        if (request.ProposedActionJson is { } proposed)
        {
            RunPayloads.CheckJson(proposed, $"proposed action of approval '{request.Name}'", maxBytes);
        }
        if (request.Timeout <= TimeSpan.Zero || request.Timeout > MaxTimeout)
        {
            throw new InvalidPayloadException($"approval '{request.Name}'", $"its timeout must be positive and at most {MaxTimeout.TotalDays:0} days, not {request.Timeout}");
        }

        if (request.OnTimeout == ApprovalTimeoutAction.Escalate)
        {
            var escalation = request.EscalateTo
                ?? throw new InvalidPayloadException($"approval '{request.Name}'", "it escalates on timeout but names no EscalateTo");
            CheckRoles(escalation.ApproverRoles, $"escalation roles of approval '{request.Name}'");
            if (escalation.Timeout <= TimeSpan.Zero || escalation.Timeout > MaxTimeout || escalation.OnTimeout == ApprovalTimeoutAction.Escalate)
            {
                throw new InvalidPayloadException($"approval '{request.Name}'", "its escalation needs a positive timeout and ends in a rejection or an approval");
            }
        }
    }

    /// <summary>
    /// Journals the request (once), then waits for a decision or the deadline, escalating as the request says;
    /// journals the outcome and returns its row.
    /// </summary>
    public static async Task<JournalRow> AwaitAsync(IStepRun run, int step, ApprovalRequest request, Func<Task> drained)
    {
        var events = run.EventsOf(step);
        var asked = events.FirstOrDefault(e => e.Kind == JournalKind.ApprovalRequested);
        ApprovalRequestedPayload requested;
        if (asked is null)
        {
            requested = new ApprovalRequestedPayload(RequestHash(request), request.Question, request.ProposedActionJson, request.ApproverRoles,
                run.Time.GetUtcNow() + request.Timeout, request.OnTimeout, request.OnTimeout == ApprovalTimeoutAction.Escalate ? request.EscalateTo : null);
            await run.AppendAsync(JournalKind.ApprovalRequested, step, request.Name, true, RunPayloads.Write(requested));
        }
        else
        {
            // Asked before this execution: its deadline and escalation are the journal's, not today's code's; what is
            // asked must be what the journal asked.
            requested = RunPayloads.Read<ApprovalRequestedPayload>(asked.Payload);
            CheckSameRequest(run.RunId, step, request, requested.RequestHash);
        }

        var escalated = events.LastOrDefault(e => e.Kind == JournalKind.ApprovalEscalated) is { } row ? RunPayloads.Read<ApprovalEscalatedPayload>(row.Payload) : null;

        // The wait for a human is a span of the run's trace, as long as it lasts in this activation.
        using var span = run.Trace != default && Telemetry.SpineTelemetry.Source.HasListeners()
            ? Telemetry.SpineTelemetry.Source.StartActivity($"wait Approval {request.Name}", System.Diagnostics.ActivityKind.Internal, run.Trace)
            : null;
        span?.SetTag("spine.run.id", run.RunId);
        span?.SetTag("spine.wait.kind", "Approval");
        span?.SetTag("spine.step", step);
        ApprovalDecision decision;
        while (true)
        {
            var (deadline, onTimeout) = escalated is null ? (requested.Deadline, requested.OnTimeout) : (escalated.Deadline, escalated.OnTimeout);
            var final = onTimeout != ApprovalTimeoutAction.Escalate;
            var signal = await run.AwaitSignalAsync(step, SignalName(step), deadline, recordDeadline: false, approval: true, closeOnTimeout: final);
            if (signal is not null)
            {
                var sent = RunPayloads.Read<SignalPayload>(signal.Payload);
                var verdict = sent.Payload.Deserialize<ApprovalVerdictPayload>(SpineJson.Options)!;
                decision = new ApprovalDecision { Approved = verdict.Approve, Actor = sent.Actor, Role = verdict.Role, Comment = verdict.Comment, DecidedAt = signal.RecordedAt };
                break;
            }

            if (!final)
            {
                // Counted from the deadline that passed (a slow wake-up does not lengthen it), unless the run was down past
                // it: then the escalation's approvers get their whole time from now.
                var next = requested.EscalateTo!;
                escalated = new ApprovalEscalatedPayload(next.ApproverRoles, EscalatedDeadline(deadline, next, run.Time.GetUtcNow()), next.OnTimeout);
                await run.AppendAsync(JournalKind.ApprovalEscalated, step, request.Name, true, RunPayloads.Write(escalated));
                continue;
            }

            decision = new ApprovalDecision { Approved = onTimeout == ApprovalTimeoutAction.Approve, TimedOut = true, DecidedAt = deadline };
            break;
        }

        await drained();
        return await run.AppendAsync(JournalKind.Approval, step, request.Name, true, RunPayloads.Write(new ApprovalOutcomePayload(decision, requested.RequestHash)));
    }

    /// <summary>The decision an <see cref="JournalKind.Approval"/> outcome records, for the request it was made on.</summary>
    /// <exception cref="NonDeterminismException">The workflow now asks something else at this step than was approved.</exception>
    public static ApprovalDecision Read(string runId, JournalRow row, ApprovalRequest request)
    {
        var outcome = RunPayloads.Read<ApprovalOutcomePayload>(row.Payload);
        CheckSameRequest(runId, row.Step!.Value, request, outcome.RequestHash);
        return outcome.Decision;
    }

    /// <summary>The escalation's deadline: its timeout after the first deadline, or after now when that passed long ago.</summary>
    private static DateTimeOffset EscalatedDeadline(DateTimeOffset first, ApprovalEscalation escalation, DateTimeOffset now) =>
        first + escalation.Timeout > now ? first + escalation.Timeout : now + escalation.Timeout;

    /// <summary>A hash of what is asked (name, question, proposed action, approver roles): a decision is on exactly that.</summary>
    private static string RequestHash(ApprovalRequest request) =>
        RunPayloads.ArgumentsHash(JsonSerializer.SerializeToElement(new { request.Name, request.Question, request.ProposedActionJson, request.ApproverRoles }, SpineJson.Options));

    private static void CheckSameRequest(string runId, int step, ApprovalRequest request, string recorded)
    {
        var current = RequestHash(request);
        if (!string.Equals(current, recorded, StringComparison.Ordinal))
        {
            throw new NonDeterminismException(runId, step, $"Approval '{request.Name}' of a request hashing to {recorded[..12]}",
                $"Approval '{request.Name}' of a request hashing to {current[..12]} ({request.Question})");
        }
    }

    /// <summary>
    /// Checks a decision against the approval it is for, as the journal says the run waits: the approval is pending
    /// and undecided, the actor holds the role it decides as, and the approval accepts that role now.
    /// </summary>
    public static ApprovalWait Authorize(string runId, RunState state, ApprovalVerdict verdict, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(verdict);
        if (Orleans.Runtime.RequestContext.Get(CallerRunKey) is string caller)
        {
            // The call comes from a run's own execution: its workflow, a tool or what a model made them do.
            throw new ApprovalForbiddenException(runId, verdict.Step ?? 0, verdict.Actor?.Id,
                $"decisions come from clients, never from a run (this call comes from run {caller})");
        }

        ApprovalWait? wait;
        if (verdict.Step is { } chosen)
        {
            if (!state.Approvals.TryGetValue(chosen, out wait))
            {
                throw new ApprovalNotPendingException(runId, state.Status, $"step {chosen} waits for no approval" + Waiting(state));
            }
        }
        else if (state.Approvals.Count == 1)
        {
            wait = state.Approvals.Values.Single();
        }
        else
        {
            throw new ApprovalNotPendingException(runId, state.Status,
                state.Approvals.Count == 0 ? "the run waits for no approval" : "name the step: the run waits for approvals at steps " + string.Join(", ", state.Approvals.Keys));
        }

        if (wait.Decided)
        {
            throw new ApprovalNotPendingException(runId, state.Status, $"the approval at step {wait.Step} was decided already");
        }

        var actor = verdict.Actor;
        if (actor is null)
        {
            throw new ApprovalForbiddenException(runId, wait.Step, null, "a decision names its actor");
        }

        actor.Check();
        RunIds.CheckIdentifier(verdict.Role, "approver role");
        RunIds.CheckIdentifier(verdict.Comment, "approval comment");
        if (actor.Id.StartsWith(SignalInbox.ReservedPrefix, StringComparison.Ordinal) || actor.Id.StartsWith("spine:", StringComparison.Ordinal))
        {
            throw new ApprovalForbiddenException(runId, wait.Step, actor.Id, "actor ids starting with 'spine' are Spine's own");
        }

        // The roles that may decide now: past a deadline that escalates, the escalation's, even before the workflow has
        // journaled the escalation; past a final deadline, nobody's.
        var roles = wait.ApproverRoles;
        if (wait.Deadline <= now)
        {
            if (wait.Escalated || wait.OnTimeout != ApprovalTimeoutAction.Escalate || wait.Request.EscalateTo is not { } escalation)
            {
                throw new ApprovalNotPendingException(runId, state.Status, $"the approval at step {wait.Step} passed its deadline ({wait.Deadline:O}); it is {(wait.OnTimeout == ApprovalTimeoutAction.Approve ? "approved" : "rejected")} by it");
            }

            roles = escalation.ApproverRoles;
        }

        if (!roles.Contains(verdict.Role, StringComparer.Ordinal))
        {
            throw new ApprovalForbiddenException(runId, wait.Step, actor.Id, $"the approval accepts {string.Join(" or ", roles.Select(r => $"'{r}'"))}, not '{verdict.Role}'");
        }

        if (!actor.HasRole(verdict.Role))
        {
            throw new ApprovalForbiddenException(runId, wait.Step, actor.Id, $"the actor does not hold the role '{verdict.Role}'");
        }

        return wait;
    }

    /// <summary>The payload of the signal that carries an authorized decision.</summary>
    public static JsonElement VerdictPayload(ApprovalVerdict verdict) =>
        JsonSerializer.SerializeToElement(new ApprovalVerdictPayload(verdict.Approve, verdict.Role, verdict.Comment), SpineJson.Options);

    /// <summary>Folds an approval's request, escalation or outcome into the run's state.</summary>
    public static void Fold(RunState state, JournalRow row)
    {
        var step = row.Step!.Value;
        switch (row.Kind)
        {
            case JournalKind.ApprovalRequested:
                var requested = RunPayloads.Read<ApprovalRequestedPayload>(row.Payload);
                state.Approvals[step] = new ApprovalWait
                {
                    Step = step,
                    Name = row.Name,
                    Request = requested,
                    RequestedAt = row.RecordedAt,
                    ApproverRoles = requested.ApproverRoles,
                    Deadline = requested.Deadline,
                    OnTimeout = requested.OnTimeout,
                };
                break;
            case JournalKind.ApprovalEscalated when state.Approvals.TryGetValue(step, out var wait):
                var escalated = RunPayloads.Read<ApprovalEscalatedPayload>(row.Payload);
                wait.ApproverRoles = escalated.ApproverRoles;
                wait.Deadline = escalated.Deadline;
                wait.OnTimeout = escalated.OnTimeout;
                wait.Escalated = true;
                break;
            case JournalKind.Approval:
                state.Approvals.Remove(step);
                break;
        }
    }

    /// <summary>Marks an approval decided once its decision is journaled.</summary>
    public static void FoldDecision(RunState state, int step)
    {
        if (state.Approvals.TryGetValue(step, out var wait))
        {
            wait.Decided = true;
        }
    }

    private static string Waiting(RunState state) =>
        state.Approvals.Count == 0 ? "; the run waits for none" : "; it waits at steps " + string.Join(", ", state.Approvals.Keys);

    private static void CheckRoles(IReadOnlyList<string>? roles, string what)
    {
        if (roles is null || roles.Count == 0 || roles.Any(string.IsNullOrWhiteSpace))
        {
            throw new InvalidPayloadException(what, "at least one role, none of them empty");
        }

        foreach (var role in roles)
        {
            RunIds.CheckIdentifier(role, what);
        }
    }
}
