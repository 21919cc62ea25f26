using System.Text.Json;
using Spine.Errors;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Recovery;
using Spine.Replay;
using Spine.Runs;
using Spine.Tools;

namespace Spine.Compensation;

/// <summary>
/// Undoes a run that did not complete (a saga): the registered compensations of the steps that may have had
/// their effect, newest first. Each compensation call goes through the attempt stages like any tool call
/// (its contract, its breaker, its timeout) and is retried by its own policy, every attempt journaled, so a
/// reactivation continues the same count and schedule.
/// </summary>
internal sealed class Compensator(IStepRun run, RunHistory history, StepPipeline pipeline, ToolRegistry tools, Secrets.SecretfulInvoker invoker, Func<double>? jitter = null)
{
    private readonly Func<double> _jitter = jitter ?? RetryPolicy.DrawJitter;

    /// <summary>
    /// Registered compensations of steps that may have had their effect and are not compensated yet, newest
    /// first: steps that succeeded, and failed steps with an attempt whose outcome is unknown (a timeout, a cancel
    /// that reached the call); and steps the run ended without an outcome of (a cancel came while they waited to
    /// retry) that had such an attempt.
    /// </summary>
    /// <remarks>A step an operator skipped did nothing to undo, so it is not compensated.</remarks>
    public IEnumerable<JournalRow> Pending() =>
        history.Events(JournalKind.CompensationRegistered)
            .Where(r => history.TryGetOutcome(r.Step!.Value, out var outcome)
                ? outcome.Ok || MayHaveHadEffect(r.Step!.Value, outcome)
                : AnAttemptMayHaveHadEffect(r.Step!.Value))
            .Where(r => !history.EventsOf(r.Step!.Value).Any(e =>
                (e.Kind == JournalKind.Compensated && e.Ok)
                || (e.Kind == JournalKind.OperatorDecided && RunPayloads.Read<DecisionPayload>(e.Payload).Action == OperatorAction.Skip)))
            .OrderByDescending(r => r.Step);

    /// <summary>Runs the pending compensations in reverse step order; returns the error when one exhausts its retries.</summary>
    public async Task<ErrorPayload?> CompensateAsync()
    {
        foreach (var registration in Pending().ToList())
        {
            if (await CompensateAsync(registration) is { } failure)
            {
                return failure;
            }
        }

        return null;
    }

    private bool MayHaveHadEffect(int step, JournalRow failedOutcome) =>
        RunPayloads.ReadError(failedOutcome.Payload).OutcomeUnknown || AnAttemptMayHaveHadEffect(step);

    private bool AnAttemptMayHaveHadEffect(int step) =>
        history.EventsOf(step).Any(e => e.Kind is JournalKind.AttemptFailed or JournalKind.Escalated && RunPayloads.ReadError(e.Payload).OutcomeUnknown);

    private async Task<ErrorPayload?> CompensateAsync(JournalRow registration)
    {
        var step = registration.Step!.Value;
        var compensation = RunPayloads.Read<CompensationPayload>(registration.Payload);
        var failures = history.EventsOf(step).Where(e => e.Kind == JournalKind.Compensated && !e.Ok).ToList();
        var attempt = failures.Count + 1;
        var last = failures.Count > 0 ? RunPayloads.ReadError(failures[^1].Payload) : null;
        if (last is { Exhausted: true })
        {
            // This compensation already gave up before the silo stopped: the verdict stands.
            return Failed(step, registration.Name, compensation.Tool, failures.Count, last.Message, last.ExceptionType, last.Class);
        }

        if (last?.RetryAt is { } due)
        {
            await run.WaitUntilAsync(due);
        }

        // Rebuilt from the journal, so a reactivation keeps the same budget: circuit-open rows mark waits
        // (when the first began), the others are attempts used.
        var circuit = failures.Where(f => RunPayloads.ReadError(f.Payload).Class == ErrorClass.CircuitOpen.Name()).ToList();
        var circuitRows = circuit.Count;
        DateTimeOffset? openSince = circuit.Count > 0 ? circuit[0].RecordedAt : null;
        var firstFailureAt = failures.Except(circuit).Select(f => (DateTimeOffset?)f.RecordedAt).FirstOrDefault();
        // The version the step pinned decides the policy too; a tool this silo lacks fails the attempt (terminally).
        RegisteredTool? resolved = null;
        try
        {
            resolved = tools.Resolve(compensation.Tool, compensation.Version);
        }
        catch (SpineException)
        {
        }

        var call = new StepCall
        {
            Kind = JournalKind.Compensated,
            Step = step,
            Name = compensation.Tool,
            Retry = RetryPolicy.None,
            Tool = new ToolCall(compensation.Tool, compensation.Arguments, () => compensation.Version),
            Replay = ReplayOrder.None,
            Execute = async a =>
            {
                var output = await invoker.InvokeAsync(a.Tool!.Tool, compensation.Arguments,
                    secrets => new ToolContext(run.RunId, step, $"{run.RunId}/{step}/compensate", a.Cancellation, a.Number, secrets), null, a.Cancellation);
                a.Tool.ValidateOutput(output);
                return RunPayloads.Write(new { version = a.Tool.Definition.Version, input = compensation.Arguments, output });
            },
        };

        while (true)
        {
            string payload;
            try
            {
                payload = await pipeline.AttemptAsync(new StepAttempt(call with { Attempt = attempt }, attempt, run.Stopping), run);
            }
            catch (Exception e) when (!run.Stopping.IsCancellationRequested && e is not (StorageUnavailableException or JournalConflictException or JournalTamperedException))
            {
                var errorClass = ErrorClassifier.Classify(e, resolved?.Definition.ClassifyError);
                var policy = resolved?.Definition.Retry ?? run.Options.Retry.Compensation;
                var error = RunPayloads.ErrorOf(e, errorClass) with { Step = step, StepName = compensation.Tool };
                var now = run.Time.GetUtcNow();
                if (e is CircuitOpenException open && open.RetryAfter - (openSince ?? now) <= policy.MaxCircuitWait)
                {
                    // Waited out with no attempt used and one row per wait, as for any step.
                    if (openSince is null)
                    {
                        openSince = now;
                        circuitRows++;
                        await run.AppendAsync(JournalKind.Compensated, step, compensation.Tool, false, RunPayloads.Write(error with { RetryAt = open.RetryAfter }), attempt);
                        attempt++;
                    }

                    await run.WaitUntilAsync(open.RetryAfter);
                    continue;
                }

                firstFailureAt ??= now;
                var withinDeadline = policy.TotalDeadline is not { } deadline || now + policy.DelayAfter(attempt, 0.5) - firstFailureAt <= deadline;
                if (errorClass == ErrorClass.Transient && attempt - circuitRows < policy.MaxAttempts && withinDeadline)
                {
                    var retryAt = run.Time.GetUtcNow() + policy.DelayAfter(attempt, _jitter());
                    await run.AppendAsync(JournalKind.Compensated, step, compensation.Tool, false, RunPayloads.Write(error with { RetryAt = retryAt }), attempt);
                    await run.WaitUntilAsync(retryAt);
                    attempt++;
                    continue;
                }

                await run.AppendAsync(JournalKind.Compensated, step, compensation.Tool, false, RunPayloads.Write(error with { Exhausted = true }), attempt);
                return Failed(step, registration.Name, compensation.Tool, attempt, e.Message, e.GetType().FullName, errorClass.Name());
            }

            // Outside the attempt, as for any step: a failure to journal it is not the compensation's failure.
            await run.AppendAsync(JournalKind.Compensated, step, compensation.Tool, true, payload, attempt);
            return null;
        }
    }

    private ErrorPayload Failed(int step, string stepName, string tool, int attempts, string message, string? exceptionType, string? errorClass) =>
        new("compensation_failed", $"Run {run.RunId}: the compensation of step {step} (tool '{tool}') failed after {attempts} attempts: {message}",
            exceptionType, errorClass, Step: step, StepName: stepName);
}
