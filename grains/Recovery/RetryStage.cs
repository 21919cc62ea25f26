using Spine.Errors;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;

namespace Spine.Recovery;

/// <summary>
/// Runs a call's attempts until one succeeds, a failure is terminal, or the retry policy is spent. Every
/// failed attempt that will be retried is journaled with its class and due time before the wait, so a
/// re-execution (another silo, after a crash) continues the same count and schedule. An open circuit
/// breaker is waited out, not retried. The stages inside it run once per attempt.
/// </summary>
/// <param name="jitter">Draws the jitter of each backoff, in [0, 1) (a test fixes it).</param>
internal sealed class RetryStage(Func<double>? jitter = null) : IStepStage
{
    private readonly Func<double> _jitter = jitter ?? RetryPolicy.DrawJitter;

    public int Order => StepStageOrder.Retry;

    public async Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next)
    {
        var policy = call.Retry;
        var history = StepAttempts.Read(run.EventsOf(call.Step));
        var attempt = history.AttemptNumber;
        var failures = history.Failures;
        var firstAttemptAt = history.FirstFailureAt ?? run.Time.GetUtcNow();
        var openSince = history.CircuitOpenSince;
        if (history.Last is { Kind: JournalKind.AttemptFailed } last && RunPayloads.ReadError(last.Payload).RetryAt is { } pendingRetry)
        {
            await run.WaitUntilAsync(pendingRetry);
        }

        while (true)
        {
            run.ThrowIfCancelRequested();
            Exception failure;
            try
            {
                return await next(attempt == call.Attempt ? call : call with { Attempt = attempt }, run);
            }
            catch (CallCancelledException cancelled)
            {
                if (!cancelled.Reached)
                {
                    run.ThrowIfCancelRequested();
                    throw;
                }

                // The cancel reached the call itself, which may have acted: its outcome is journaled as cancelled with
                // an unknown outcome, so the run's compensation covers the step; the workflow sees the cancel.
                return StepOutcome.Failed(RunPayloads.ErrorOf(new RunCancelledException(run.RunId, null), ErrorClass.Cancelled) with
                {
                    Message = $"The run was cancelled while attempt {attempt} was in flight; whether it had its effect is unknown.",
                    ArgumentsHash = call.ArgumentsHash,
                    OutcomeUnknown = true,
                }, attempt);
            }
            catch (Exception e) when (!run.Stopping.IsCancellationRequested && e is not (StorageUnavailableException or JournalConflictException or JournalTamperedException or RunCancelledException))
            {
                failure = e;
            }

            var errorClass = ErrorClassifier.Classify(failure, call.Classify);
            // A call that timed out may have had its effect: recorded, so a failing run still compensates the step.
            var error = RunPayloads.ErrorOf(failure, errorClass) with { ArgumentsHash = call.ArgumentsHash, OutcomeUnknown = failure is TimeoutException };
            var now = run.Time.GetUtcNow();
            if (failure is CircuitOpenException open)
            {
                // An open breaker is waited out, not retried: one journal row when the step first meets it,
                // none for each later look at a breaker that is still open (a failed probe in between is an
                // ordinary failed attempt), and no attempt of the policy used up. The wait has its own
                // deadline, counted from that first row, after which the step counts as exhausted.
                var since = openSince ?? now;
                if (open.RetryAfter - since <= policy.MaxCircuitWait)
                {
                    if (openSince is null)
                    {
                        await run.AppendAsync(JournalKind.AttemptFailed, call.Step, call.Name, false, RunPayloads.Write(error with { RetryAt = open.RetryAfter }), attempt);
                        openSince = now;
                        attempt++;
                    }

                    await run.WaitUntilAsync(open.RetryAfter);
                    continue;
                }

                error = error with { Message = $"{error.Message} The step waited {now - since:g} for it, the most its retry policy allows (MaxCircuitWait {policy.MaxCircuitWait:g})." };
            }
            else if (errorClass == ErrorClass.Transient)
            {
                var used = failures + 1;
                var retryAt = now + policy.DelayAfter(used, _jitter());
                if (failure is RateLimitedException { RetryAfter: { } asked } && now + asked > retryAt)
                {
                    // The service said when it takes calls again: no sooner.
                    retryAt = now + asked;
                }

                var withinDeadline = policy.TotalDeadline is not { } deadline || retryAt - firstAttemptAt <= deadline;
                if (withinDeadline && used < policy.MaxAttempts)
                {
                    await run.AppendAsync(JournalKind.AttemptFailed, call.Step, call.Name, false, RunPayloads.Write(error with { RetryAt = retryAt }), attempt);
                    failures = used;
                    attempt++;
                    await run.WaitUntilAsync(retryAt);
                    continue;
                }
            }

            // Spent: a failure that a later attempt could have fixed counts as exhausted (dead-letter, escalation).
            return StepOutcome.Failed(error with { Exhausted = errorClass is ErrorClass.Transient or ErrorClass.CircuitOpen }, attempt);
        }
    }
}
