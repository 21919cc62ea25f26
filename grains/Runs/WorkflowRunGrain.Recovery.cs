using System.Security.Cryptography;
using System.Text.Json;
using Spine.Errors;
using Spine.Journal;
using Spine.Recovery;
using Spine.Tools;

namespace Spine.Runs;

/// <summary>Operator escalation, compensation, the dead-letter queue and replay.</summary>
public sealed partial class WorkflowRunGrain
{
    /// <inheritdoc />
    public async Task<RunInfo> ResolveEscalationAsync(OperatorDecision decision)
    {
        ArgumentNullException.ThrowIfNull(decision);
        var state = _state ?? throw new RunNotFoundException(RunId);
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
        if (_decisionsClaimed.Contains(escalation.Step))
        {
            // Another decision on this step is being journaled right now (a second operator, or a retried
            // call): only one decision per escalation may ever reach the journal.
            throw new InvalidRunStateException(RunId, state.Status, $"{action}: step {escalation.Step} is already being decided");
        }

        var rows = new List<PendingRow>
        {
            new(JournalKind.OperatorDecided, escalation.Step, escalation.StepName, true,
                RunPayloads.Write(new DecisionPayload(decision.Action, decision.Reason, decision.Operator)), null),
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

        // The decision and the outcome it implies commit together, with the index row: a crash never
        // leaves a decision without its outcome. With this step decided, the run is executing again unless
        // other steps still wait for an operator and nothing else runs.
        var now = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        var status = LiveStatus(state.Escalations.Count - 1);

        // Claimed before the first await: this method interleaves, and a second caller must not get through.
        _decisionsClaimed.Add(escalation.Step);
        try
        {
            await WriteAsync(rows, state.ToRunRow(RunId) with { Status = status, UpdatedAt = now });
        }
        finally
        {
            _decisionsClaimed.Remove(escalation.Step);
        }

        state.Escalations.Remove(escalation.Step);
        state.Status = status;
        state.UpdatedAt = now;
        if (_operators.TryGetValue(escalation.Step, out var waiter))
        {
            waiter.TrySetResult(decision.Action);
        }

        StartExecution();
        return Info();
    }

    /// <inheritdoc />
    public async Task<RunInfo> DiscardAsync(string? reason)
    {
        var state = _state ?? throw new RunNotFoundException(RunId);
        if (state.Status != RunStatus.DeadLettered)
        {
            throw new InvalidRunStateException(RunId, state.Status, "discard a run that is not dead-lettered");
        }

        var now = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        await AppendAsync(JournalKind.RunDiscarded, null, "RunDiscarded", true, RunPayloads.Reason(reason),
            state.ToRunRow(RunId) with { Status = RunStatus.Discarded, UpdatedAt = now });
        state.Status = RunStatus.Discarded;
        state.UpdatedAt = now;
        return Info();
    }

    /// <inheritdoc />
    public async Task<RunInfo> StartReplayAsync(ReplayRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (_state is not null)
        {
            if (_state.DifferenceFrom(request) is { } difference)
            {
                throw new IdempotencyKeyConflictException(RunId, request.IdempotencyKey, difference);
            }

            return Info();
        }

        var rows = await _storage.ExecuteAsync(token => _store.ReadAsync(request.SourceRunId, token), _shutdown.Token);
        if (rows.Count == 0)
        {
            throw new RunNotFoundException(request.SourceRunId);
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

        // The reused outcomes keep their journal order (a replay hands them back in it), with the ends of
        // the sleeps among them (format 2).
        var reused = source.History.Rows
            .Where(r => r.Step < fromStep && (r.IsStepOutcome || r.Kind == JournalKind.TimerFired))
            .Where(r => !r.IsStepOutcome || (source.History.TryGetOutcome(r.Step!.Value, out var outcome) && outcome.Seq == r.Seq))
            .OrderBy(r => r.Seq)
            .ToList();
        var start = new StartRunRequest(sourceState.WorkflowType, request.InputJson ?? sourceState.InputJson, sourceState.WorkflowVersion,
            request.IdempotencyKey, sourceState.AccountId, request.Parameters ?? sourceState.Parameters);
        // The reused rows keep their meaning: the replay is written in its source's journal format.
        return await BeginAsync(start, new RunOrigin(request.SourceRunId, fromStep), reused, sourceState.JournalFormat);
    }

    /// <summary>Hands an exhausted step to an operator: journals the escalation and waits for the decision.</summary>
    internal async Task<OperatorAction> EscalateAsync(JournalKind stepKind, int step, string name, ErrorPayload error, int attempt)
    {
        var state = _state!;

        // A cancel that came during the step's last attempt found no waiter to wake: it takes effect here,
        // before an escalation nobody could decide on any more.
        ThrowIfCancelRequested();

        // Armed before the first await: a cancel arriving while the escalation commits is not lost. The
        // escalation itself becomes visible (and decidable) only once its row is durable.
        var decision = _operators[step] = new TaskCompletionSource<OperatorAction>(TaskCreationOptions.RunContinuationsAsynchronously);
        var now = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        var status = LiveStatus(state.Escalations.Count + 1);
        try
        {
            await AppendAsync(JournalKind.Escalated, step, name, false, RunPayloads.Write(error), state.ToRunRow(RunId) with { Status = status, UpdatedAt = now }, attempt);
        }
        catch
        {
            _operators.Remove(step);
            throw;
        }

        if (state.CancelRequested)
        {
            // The cancel interleaved with the append: it already woke every waiter but this one.
            _operators.Remove(step);
            throw new RunCancelledException(RunId, state.CancelReason);
        }

        state.Escalations[step] = new PendingEscalation(new Escalation(step, name, error.ToRunError()), stepKind);
        state.Status = LiveStatus(state.Escalations.Count);
        state.UpdatedAt = now;
        KeepAliveWhile(state.Status);
        return await WaitForDecisionAsync(step, decision);
    }

    /// <summary>Waits again for the decision on a step that was escalated before this activation.</summary>
    internal async Task<OperatorAction> AwaitOperatorAsync(int step)
    {
        if (_state!.CancelRequested)
        {
            throw new RunCancelledException(RunId, _state.CancelReason);
        }

        var decision = _operators[step] = new TaskCompletionSource<OperatorAction>(TaskCreationOptions.RunContinuationsAsynchronously);
        await RefreshStatusAsync();
        return await WaitForDecisionAsync(step, decision);
    }

    private async Task<OperatorAction> WaitForDecisionAsync(int step, TaskCompletionSource<OperatorAction> decision)
    {
        await using (_shutdown.Token.Register(() => decision.TrySetCanceled()))
        {
            try
            {
                return await decision.Task;
            }
            finally
            {
                if (_operators.TryGetValue(step, out var current) && current == decision)
                {
                    _operators.Remove(step);
                }
            }
        }
    }

    /// <summary>
    /// Registered compensations of steps that may have had their effect and are not compensated yet, newest
    /// first: steps that succeeded, and failed steps with an attempt whose outcome is unknown (a timeout).
    /// </summary>
    /// <remarks>A step an operator skipped did nothing to undo, so it is not compensated.</remarks>
    private IEnumerable<JournalRow> PendingCompensations() =>
        _history.Events(JournalKind.CompensationRegistered)
            .Where(r => _history.TryGetOutcome(r.Step!.Value, out var outcome) && (outcome.Ok || MayHaveHadEffect(r.Step!.Value, outcome)))
            .Where(r => !_history.EventsOf(r.Step!.Value).Any(e =>
                (e.Kind == JournalKind.Compensated && e.Ok)
                || (e.Kind == JournalKind.OperatorDecided && RunPayloads.Read<DecisionPayload>(e.Payload).Action == OperatorAction.Skip)))
            .OrderByDescending(r => r.Step);

    private bool MayHaveHadEffect(int step, JournalRow failedOutcome) =>
        RunPayloads.ReadError(failedOutcome.Payload).OutcomeUnknown
        || _history.EventsOf(step).Any(e => e.Kind is JournalKind.AttemptFailed or JournalKind.Escalated && RunPayloads.ReadError(e.Payload).OutcomeUnknown);

    /// <summary>Runs the pending compensations in reverse step order; returns the error when one exhausts its retries.</summary>
    private async Task<ErrorPayload?> CompensateAsync()
    {
        foreach (var registration in PendingCompensations().ToList())
        {
            var step = registration.Step!.Value;
            var call = RunPayloads.Read<CompensationPayload>(registration.Payload);
            var failures = _history.EventsOf(step).Where(e => e.Kind == JournalKind.Compensated && !e.Ok).ToList();
            var attempt = failures.Count + 1;
            var last = failures.Count > 0 ? RunPayloads.ReadError(failures[^1].Payload) : null;
            if (last is { Exhausted: true })
            {
                // This compensation already gave up before the silo stopped: the verdict stands.
                return CompensationFailed(step, registration.Name, call.Tool, failures.Count, last.Message, last.ExceptionType, last.Class);
            }

            if (last?.RetryAt is { } due)
            {
                await WaitUntilAsync(due, sleeping: false);
            }

            // Rebuilt from the journal, so a reactivation keeps the same budget: circuit-open rows mark waits
            // (when the first began), the others are attempts used.
            var circuit = failures.Where(f => RunPayloads.ReadError(f.Payload).Class == ErrorClass.CircuitOpen.Name()).ToList();
            var circuitRows = circuit.Count;
            DateTimeOffset? openSince = circuit.Count > 0 ? circuit[0].RecordedAt : null;
            var firstFailureAt = failures.Except(circuit).Select(f => (DateTimeOffset?)f.RecordedAt).FirstOrDefault();
            while (true)
            {
                RegisteredTool? tool = null;
                System.Text.Json.JsonElement output;
                var permit = Spine.Breakers.BreakerPermit.Allowed;
                try
                {
                    tool = Tools.Resolve(call.Tool, call.Version);
                    tool.ValidateInput(call.Arguments);

                    // A compensation goes through the tool's breaker like any call: a tool that is down is waited out.
                    (permit, var openUntil) = await Breakers.AcquireAsync(call.Tool, tool.Definition.Breaker ?? Options.Breaker);
                    if (permit == Spine.Breakers.BreakerPermit.Rejected)
                    {
                        throw new CircuitOpenException(call.Tool, openUntil);
                    }

                    var context = new ToolContext(RunId, step, $"{RunId}/{step}/compensate", _shutdown.Token, attempt);
                    output = await tool.Tool.InvokeAsync(call.Arguments, context);
                    tool.ValidateOutput(output);
                }
                catch (Exception e) when (!_shutdown.IsCancellationRequested && e is not (StorageUnavailableException or JournalConflictException))
                {
                    var errorClass = ErrorClassifier.Classify(e, tool?.Definition.ClassifyError);
                    if (e is not CircuitOpenException)
                    {
                        await ReportCompensationAsync(call.Tool, permit, errorClass != ErrorClass.Transient);
                    }

                    var policy = tool?.Definition.Retry ?? Options.Retry.Compensation;
                    var error = RunPayloads.ErrorOf(e, errorClass) with { Step = step, StepName = call.Tool };
                    var now = Time.GetUtcNow();
                    if (e is CircuitOpenException open && open.RetryAfter - (openSince ?? now) <= policy.MaxCircuitWait)
                    {
                        // Waited out with no attempt used and one row per wait, as for any step.
                        if (openSince is null)
                        {
                            openSince = now;
                            circuitRows++;
                            await AppendAsync(JournalKind.Compensated, step, call.Tool, false, RunPayloads.Write(error with { RetryAt = open.RetryAfter }), attempt: attempt);
                            attempt++;
                        }

                        await WaitUntilAsync(open.RetryAfter, sleeping: false);
                        continue;
                    }

                    firstFailureAt ??= now;
                    var withinDeadline = policy.TotalDeadline is not { } deadline || now + policy.DelayAfter(attempt, 0.5) - firstFailureAt <= deadline;
                    if (errorClass == ErrorClass.Transient && attempt - circuitRows < policy.MaxAttempts && withinDeadline)
                    {
                        var retryAt = Time.GetUtcNow() + policy.DelayAfter(attempt, Jitter());
                        await AppendAsync(JournalKind.Compensated, step, call.Tool, false, RunPayloads.Write(error with { RetryAt = retryAt }), attempt: attempt);
                        await WaitUntilAsync(retryAt, sleeping: false);
                        attempt++;
                        continue;
                    }

                    await AppendAsync(JournalKind.Compensated, step, call.Tool, false, RunPayloads.Write(error with { Exhausted = true }), attempt: attempt);
                    return CompensationFailed(step, registration.Name, call.Tool, attempt, e.Message, e.GetType().FullName, errorClass.Name());
                }

                // Outside the attempt, as for any step: a failure to journal it is not the compensation's failure.
                await AppendAsync(JournalKind.Compensated, step, call.Tool, true,
                    RunPayloads.Write(new { version = tool.Definition.Version, input = call.Arguments, output }), attempt: attempt);
                await ReportCompensationAsync(call.Tool, permit, true);
                break;
            }
        }

        return null;
    }

    /// <summary>Tells the tool's breaker how a compensation call went; the breaker is advisory, so a failure to tell it changes nothing.</summary>
    private async Task ReportCompensationAsync(string tool, Spine.Breakers.BreakerPermit permit, bool success)
    {
        try
        {
            if (permit == Spine.Breakers.BreakerPermit.Probe)
            {
                await Breakers.ReportProbeAsync(tool, success);
            }
            else if (permit == Spine.Breakers.BreakerPermit.Allowed)
            {
                Breakers.Record(tool, success);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogBreakerReportFailed(_logger, e, RunId, tool);
        }
    }

    private ErrorPayload CompensationFailed(int step, string stepName, string tool, int attempts, string message, string? exceptionType, string? errorClass) =>
        new("compensation_failed", $"Run {RunId}: the compensation of step {step} (tool '{tool}') failed after {attempts} attempts: {message}",
            exceptionType, errorClass, Step: step, StepName: stepName);

    internal static double Jitter() => RandomNumberGenerator.GetInt32(int.MaxValue) / (double)int.MaxValue;
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
