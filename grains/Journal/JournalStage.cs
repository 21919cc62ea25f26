using Spine.Pipeline;

namespace Spine.Journal;

/// <summary>
/// Journals a call's outcome once the stages inside it produced one. It sits outside every attempt: a
/// failure to journal an outcome is never the step's failure (the append rides out an outage in place; if
/// it cannot, the activation ends and the run resumes from its journal).
/// </summary>
internal sealed class JournalStage : IStepStage
{
    public int Order => StepStageOrder.Journal;

    public async Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next)
    {
        var outcome = await next(call, run);
        if (outcome.Row is not null)
        {
            // Already in the journal (an operator's decision).
            return outcome;
        }

        var attempt = call.Instant ? null : outcome.Attempt;
        if (call.WithOutcome?.Invoke(outcome) is { Count: > 0 } extra)
        {
            var rows = await run.AppendAsync([.. extra, new PendingRow(call.Kind, call.Step, call.Name, outcome.Ok, outcome.JournalPayload, attempt)]);
            return outcome with { Row = rows[^1] };
        }

        var row = await run.AppendAsync(call.Kind, call.Step, call.Name, outcome.Ok, outcome.JournalPayload, attempt);
        return outcome with { Row = row };
    }
}
