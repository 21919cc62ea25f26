using Spine.Pipeline;

namespace Spine.Replay;

/// <summary>
/// The outermost stage: a call the journal already answered gets its recorded outcome, in journal order
/// (see <see cref="ReplayOrder"/>), and nothing else runs; a live outcome reaches the workflow only after
/// every outcome the journal held before it.
/// </summary>
internal sealed class ReplayStage : IStepStage
{
    public int Order => StepStageOrder.Replay;

    public async Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next)
    {
        if (call.Recorded is { } row)
        {
            await run.Replay.TurnAsync(call.Step);
            return StepOutcome.FromJournal(row);
        }

        var outcome = await next(call, run);
        await run.Replay.DrainedAsync();
        return outcome;
    }
}
