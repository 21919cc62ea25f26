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
        if (state.Status != RunStatus.AwaitingOperator || state.Escalation is not { } escalation)
        {
            throw new InvalidRunStateException(RunId, state.Status, $"{decision.Action.ToString().ToLowerInvariant()} an escalated step");
        }

        var escalated = _history.EventsOf(escalation.Step).Last(r => r.Kind == JournalKind.Escalated);
        var stepKind = Enum.Parse<JournalKind>(RunPayloads.ReadError(escalated.Payload).StepKind ?? nameof(JournalKind.Step));
        string? outcome = null;
        if (decision.Action == OperatorAction.Skip)
        {
            var result = RunPayloads.CheckJson(decision.ResultJson ?? "null", $"result supplied for step {escalation.Step}", Options.MaxPayloadBytes);
            outcome = stepKind == JournalKind.Tool
                ? RunPayloads.Write(new { version = (string?)null, input = (object?)null, output = result, skipped = true })
                : result.GetRawText();
        }

        state.Status = RunStatus.Running;
        state.Escalation = null;
        state.UpdatedAt = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        await AppendAsync(JournalKind.OperatorDecided, escalation.Step, escalation.StepName, true,
            RunPayloads.Write(new DecisionPayload(decision.Action, decision.Reason, decision.Operator)), state.ToRunRow(RunId));
        switch (decision.Action)
        {
            case OperatorAction.Skip:
                await AppendAsync(stepKind, escalation.Step, escalation.StepName, true, outcome);
                break;
            case OperatorAction.Fail:
                var error = new ErrorPayload("operator_failed", $"An operator failed step {escalation.Step} '{escalation.StepName}': {decision.Reason ?? "no reason given"}",
                    null, ErrorClass.Terminal.Name());
                await AppendAsync(stepKind, escalation.Step, escalation.StepName, false, RunPayloads.Write(error));
                break;
        }

        _operator?.TrySetResult(decision.Action);
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

        state.Status = RunStatus.Discarded;
        state.UpdatedAt = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        await AppendAsync(JournalKind.RunDiscarded, null, "RunDiscarded", true, RunPayloads.Reason(reason), state.ToRunRow(RunId));
        return Info();
    }

    /// <inheritdoc />
    public async Task<RunInfo> StartReplayAsync(ReplayRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (_state is not null)
        {
            return Info();
        }

        var rows = await _store.ReadAsync(request.SourceRunId);
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

        var reused = source.History.Outcomes.Where(r => r.Step < fromStep).OrderBy(r => r.Step).ToList();
        var start = new StartRunRequest(sourceState.WorkflowType, request.InputJson ?? sourceState.InputJson, sourceState.WorkflowVersion,
            request.IdempotencyKey, sourceState.AccountId, request.Parameters ?? sourceState.Parameters);
        return await BeginAsync(start, new RunOrigin(request.SourceRunId, fromStep), reused);
    }

    /// <summary>Pauses the run for an operator's decision on an escalated step.</summary>
    internal async Task<OperatorAction> AwaitOperatorAsync(int step)
    {
        ThrowIfCancelRequested();
        var state = _state!;
        var escalated = _history.EventsOf(step).Last(r => r.Kind == JournalKind.Escalated);
        state.Escalation = new Escalation(step, escalated.Name, RunPayloads.ReadError(escalated.Payload).ToRunError());
        if (state.Status != RunStatus.AwaitingOperator)
        {
            await SetStatusAsync(RunStatus.AwaitingOperator);
        }

        var decision = _operator = new TaskCompletionSource<OperatorAction>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using (_shutdown.Token.Register(() => decision.TrySetCanceled()))
        {
            try
            {
                return await decision.Task;
            }
            finally
            {
                _operator = null;
            }
        }
    }

    /// <summary>Registered compensations of steps that succeeded and are not compensated yet, newest first.</summary>
    private IEnumerable<JournalRow> PendingCompensations() =>
        _history.Events(JournalKind.CompensationRegistered)
            .Where(r => _history.TryGetOutcome(r.Step!.Value, out var outcome) && outcome.Ok)
            .Where(r => !_history.EventsOf(r.Step!.Value).Any(e => e.Kind == JournalKind.Compensated && e.Ok))
            .OrderByDescending(r => r.Step);

    /// <summary>Runs the pending compensations in reverse step order; returns the error when one exhausts its retries.</summary>
    private async Task<ErrorPayload?> CompensateAsync()
    {
        foreach (var registration in PendingCompensations().ToList())
        {
            var step = registration.Step!.Value;
            var call = RunPayloads.Read<CompensationPayload>(registration.Payload);
            var failures = _history.EventsOf(step).Where(e => e.Kind == JournalKind.Compensated && !e.Ok).ToList();
            var attempt = failures.Count + 1;
            if (failures.Count > 0 && RunPayloads.ReadError(failures[^1].Payload).RetryAt is { } due)
            {
                await WaitUntilAsync(due, null);
            }

            while (true)
            {
                RegisteredTool? tool = null;
                try
                {
                    tool = Tools.Resolve(call.Tool, call.Version);
                    tool.ValidateInput(call.Arguments);
                    var context = new ToolContext(RunId, step, $"{RunId}/{step}/compensate", _shutdown.Token, attempt);
                    var output = await tool.Tool.InvokeAsync(call.Arguments, context);
                    tool.ValidateOutput(output);
                    await AppendAsync(JournalKind.Compensated, step, call.Tool, true,
                        RunPayloads.Write(new { version = tool.Definition.Version, input = call.Arguments, output }), attempt: attempt);
                    break;
                }
                catch (Exception e) when (!_shutdown.IsCancellationRequested && e is not (StorageUnavailableException or JournalConflictException))
                {
                    var errorClass = ErrorClassifier.Classify(e, tool?.Definition.ClassifyError);
                    var policy = tool?.Definition.Retry ?? Options.Retry.Compensation;
                    var error = RunPayloads.ErrorOf(e, errorClass) with { Step = step, StepName = call.Tool };
                    if (errorClass == ErrorClass.Transient && attempt < policy.MaxAttempts)
                    {
                        var retryAt = Time.GetUtcNow() + policy.DelayAfter(attempt, Jitter());
                        await AppendAsync(JournalKind.Compensated, step, call.Tool, false, RunPayloads.Write(error with { RetryAt = retryAt }), attempt: attempt);
                        await WaitUntilAsync(retryAt, null);
                        attempt++;
                        continue;
                    }

                    await AppendAsync(JournalKind.Compensated, step, call.Tool, false, RunPayloads.Write(error with { Exhausted = true }), attempt: attempt);
                    return new ErrorPayload("compensation_failed",
                        $"Run {RunId}: the compensation of step {step} (tool '{call.Tool}') failed after {attempt} attempts: {e.Message}",
                        e.GetType().FullName, errorClass.Name(), Step: step, StepName: registration.Name);
                }
            }
        }

        return null;
    }

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
