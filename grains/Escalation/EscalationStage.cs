using Spine.Journal;
using Spine.Pipeline;
using Spine.Recovery;
using Spine.Workflows;

namespace Spine.Escalation;

/// <summary>
/// Hands a step whose retries are spent to an operator (when the step or its workflow asks for it) and
/// waits for the decision: a skip or a fail gives the step its outcome (journaled with the decision), a
/// retry runs its attempts again with a fresh budget.
/// </summary>
internal sealed class EscalationStage : IStepStage
{
    public int Order => StepStageOrder.Escalation;

    // A step that cannot escalate and has no escalation pending passes straight through.
    public Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next) =>
        call.EscalateToOperator || run.EventsOf(call.Step).Count > 0 ? EscalateAsync(call, run, next) : next(call, run);

    private static async Task<StepOutcome> EscalateAsync(StepCall call, IStepRun run, StepHandler next)
    {
        while (true)
        {
            if (StepAttempts.Read(run.EventsOf(call.Step)).Last?.Kind == JournalKind.Escalated)
            {
                // The run was waiting for an operator when its activation ended: wait again.
                await run.AwaitOperatorAsync(call.Step);
            }
            else
            {
                var outcome = await next(call, run);
                if (outcome.Ok || outcome.Row is not null || !call.EscalateToOperator || outcome.Error is not { Exhausted: true } error)
                {
                    return outcome;
                }

                await run.EscalateAsync(call.Kind, call.Step, call.Name,
                    error with { Step = call.Step, StepName = call.Name, StepKind = call.Kind.ToString() }, outcome.Attempt ?? call.Attempt);
            }

            run.ThrowIfCancelRequested();
            if (run.TryGetOutcome(call.Step, out var decided))
            {
                return StepOutcome.FromJournal(decided);
            }
        }
    }
}
