using System.Security.Cryptography;
using System.Text.Json;
using Spine.Errors;
using Spine.Identity;
using Spine.Journal;
using Spine.Recovery;
using Spine.Tools;

namespace Spine.Runs;

/// <summary>Operator escalation, the dead-letter queue and replay.</summary>
public sealed partial class WorkflowRunGrain
{
    /// <inheritdoc />
    public async Task<RunInfo> ResolveEscalationAsync(OperatorDecision decision)
    {
        ArgumentNullException.ThrowIfNull(decision);
        decision.Actor?.Check();
        var state = State ?? throw new RunNotFoundException(RunId);
        var action = $"{decision.Action.ToString().ToLowerInvariant()} an escalated step";
        if (state.Status != RunStatus.AwaitingOperator && state.Escalations.Count == 0)
        {
            throw new InvalidRunStateException(RunId, state.Status, action);
        }

        if (state.CancelRequested)
        {
            throw new InvalidRunStateException(RunId, state.Status, action + " of a run being cancelled");
        }

        PendingEscalation? pending;
        if (decision.Step is { } chosen)
        {
            if (!state.Escalations.TryGetValue(chosen, out pending))
            {
                throw new InvalidRunStateException(RunId, state.Status, $"{action}: step {chosen} is not escalated (escalated: {string.Join(", ", state.Escalations.Keys)})");
            }
        }
        else if (state.Escalations.Count == 1)
        {
            pending = state.Escalations.Values.Single();
        }
        else
        {
            throw new InvalidRunStateException(RunId, state.Status,
                $"{action} without naming it: steps {string.Join(", ", state.Escalations.Keys)} are escalated");
        }

        var escalation = pending.Escalation;
        var rows = new List<PendingRow>
        {
            new(JournalKind.OperatorDecided, escalation.Step, escalation.StepName, true,
                RunPayloads.Write(new DecisionPayload(decision.Action, decision.Reason, null, decision.Actor)), null),
        };
        switch (decision.Action)
        {
            case OperatorAction.Skip:
                var result = RunPayloads.CheckJson(decision.ResultJson ?? "null", $"result supplied for step {escalation.Step}", Options.MaxPayloadBytes);
                var outcome = pending.Kind == JournalKind.Tool
                    ? RunPayloads.Write(new { version = (string?)null, input = (object?)null, output = result, skipped = true })
                    : result.GetRawText();
                rows.Add(new(pending.Kind, escalation.Step, escalation.StepName, true, outcome, null));
                break;
            case OperatorAction.Fail:
                var error = new ErrorPayload("operator_failed", $"An operator failed step {escalation.Step} '{escalation.StepName}': {decision.Reason ?? "no reason given"}",
                    null, ErrorClass.Terminal.Name());
                rows.Add(new(pending.Kind, escalation.Step, escalation.StepName, false, RunPayloads.Write(error), null));
                break;
        }

        // Claimed before the first await: this method interleaves, and a second caller must not get through.
        if (!_decisions.TryClaim(escalation.Step))
        {
            // Another decision on this step is being journaled right now (a second operator, or a retried
            // call): only one decision per escalation may ever reach the journal.
            throw new InvalidRunStateException(RunId, state.Status, $"{action}: step {escalation.Step} is already being decided");
        }

        // The decision and the outcome it implies commit together, with the index row: a crash never
        // leaves a decision without its outcome. With this step decided, the run is executing again unless
        // other steps still wait for an operator and nothing else runs.
        try
        {
            await _journal.TransitionAsync(rows, LiveStatus(state.Escalations.Count - 1));
        }
        finally
        {
            _decisions.Release(escalation.Step);
        }

        state.Escalations.Remove(escalation.Step);
        _decisions.Decide(escalation.Step, decision.Action);

        StartExecution();
        return Info();
    }

    /// <inheritdoc />
    public async Task<RunInfo> DiscardAsync(string? reason, SpineActor? actor)
    {
        actor?.Check();
        var state = State ?? throw new RunNotFoundException(RunId);
        if (state.Status != RunStatus.DeadLettered)
        {
            throw new InvalidRunStateException(RunId, state.Status, "discard a run that is not dead-lettered");
        }

        await _journal.TransitionAsync([new(JournalKind.RunDiscarded, null, "RunDiscarded", true, RunPayloads.Reason(reason, actor), null)], RunStatus.Discarded);
        return Info();
    }

    /// <inheritdoc />
    public async Task<RunInfo> StartReplayAsync(ReplayRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (State is { } existing)
        {
            if (existing.DifferenceFrom(request) is { } difference)
            {
                throw new IdempotencyKeyConflictException(RunId, request.IdempotencyKey, difference);
            }

            return Info();
        }

        _journal.ThrowIfTampered();
        var (record, check) = await _storage.ExecuteAsync(token => _audit.ReadForActivationAsync(request.SourceRunId, token), _shutdown.Token);
        var rows = record.Rows;
        if (rows.Count == 0 && check.Intact)
        {
            throw new RunNotFoundException(request.SourceRunId);
        }

        if (!check.Intact)
        {
            // A replay reuses its source's outcomes: from a journal that does not verify, they may be forged.
            throw new JournalTamperedException(request.SourceRunId, check.FirstBadSeq, check.Problem ?? "the journal does not verify");
        }

        var source = new WorkflowRunGrainSnapshot(rows);
        var sourceState = source.State ?? throw new RunNotFoundException(request.SourceRunId);
        if (!sourceState.Status.IsTerminal())
        {
            throw new InvalidRunStateException(request.SourceRunId, sourceState.Status, "replay a run that has not finished");
        }

        var fromStep = request.FromStep ?? sourceState.Error?.Step ?? 1;
        if (fromStep < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(request), fromStep, "FromStep must be at least 1.");
        }

        // A human's approval is of one run: a replay asks again, and so re-executes every step numbered after the
        // first approval it asks again (those calls came after the decision, which may now go the other way; and
        // their reused outcomes would wait for the approval while it waits for them to be handed back).
        // Nor is an outcome its cancel cut short reused: the replay is not cancelled, and runs that call again.
        var reuseBelow = source.History.Outcomes.Where(r => (r.Kind == JournalKind.Approval || Pipeline.InFlightCancel.Is(r)) && r.Step < fromStep)
            .Select(r => r.Step!.Value).Append(fromStep).Min();

        // The reused outcomes keep their journal order (a replay hands them back in it), with the ends of
        // the sleeps among them (format 2).
        var reused = source.History.Rows
            .Where(r => r.Step < reuseBelow && (r.IsStepOutcome || r.Kind == JournalKind.TimerFired))
            .Where(r => !r.IsStepOutcome || (source.History.TryGetOutcome(r.Step!.Value, out var outcome) && outcome.Seq == r.Seq))
            .OrderBy(r => r.Seq)
            .Select(r => r.Kind == JournalKind.Signal ? r with { Payload = Signals.SignalInbox.ForgetId(r.Payload) } : r)
            .ToList();
        var start = new StartRunRequest(sourceState.WorkflowType, request.InputJson ?? sourceState.InputJson, sourceState.WorkflowVersion,
            request.IdempotencyKey, sourceState.AccountId, request.Parameters ?? sourceState.Parameters, request.Actor, sourceState.Budget);
        // The reused rows keep their meaning: the replay is written in its source's journal format.
        return await BeginAsync(start, new RunOrigin(request.SourceRunId, fromStep), reused, sourceState.JournalFormat);
    }

    /// <summary>Hands an exhausted step to an operator: journals the escalation and waits for the decision.</summary>
    internal async Task<OperatorAction> EscalateAsync(JournalKind stepKind, int step, string name, ErrorPayload error, int attempt)
    {
        var state = State!;

        // A cancel that came during the step's last attempt found no waiter to wake: it takes effect here,
        // before an escalation nobody could decide on any more.
        ThrowIfCancelRequested();

        // The run may show as waiting for an operator from this commit on, where the recovery sweep does not look.
        await _pipeline.IdlingAsync(this);
        ThrowIfCancelRequested();

        // Armed before the first await: a cancel arriving while the escalation commits is not lost. The
        // escalation itself becomes visible (and decidable) only once its row is durable.
        var decision = _decisions.Arm(step);
        try
        {
            await _journal.TransitionAsync([new(JournalKind.Escalated, step, name, false, RunPayloads.Write(error), attempt)], LiveStatus(state.Escalations.Count + 1));
        }
        catch
        {
            _decisions.Disarm(step);
            throw;
        }

        if (state.CancelRequested)
        {
            // The cancel interleaved with the append: it already woke every waiter but this one. Its commit,
            // queued after this one, set the run back to Running in the index and here.
            _decisions.Disarm(step);
            throw new RunCancelledException(RunId, state.CancelReason);
        }

        state.Escalations[step] = new PendingEscalation(new Escalation(step, name, error.ToRunError()), stepKind);
        state.Status = LiveStatus(state.Escalations.Count);
        _journal.Changes.Pulse();
        KeepAliveWhile(state.Status);
        return await _decisions.WaitAsync(step, decision);
    }

    /// <summary>Waits again for the decision on a step that was escalated before this activation.</summary>
    internal async Task<OperatorAction> AwaitOperatorAsync(int step)
    {
        ThrowIfCancelRequested();
        var decision = _decisions.Arm(step);
        await RefreshStatusAsync();
        return await _decisions.WaitAsync(step, decision);
    }
}

/// <summary>A read-only view of another run's journal (the source of a replay).</summary>
internal sealed class WorkflowRunGrainSnapshot
{
    public WorkflowRunGrainSnapshot(IReadOnlyList<JournalRow> rows)
    {
        foreach (var row in rows)
        {
            History.Add(row);
            State = RunState.Fold(State, row);
        }
    }

    public RunHistory History { get; } = new();

    public RunState? State { get; }
}
