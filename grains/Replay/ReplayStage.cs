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

    // Once every recorded outcome is handed back (a run past its replay), a live call passes straight through,
    // unless the replay was poisoned: then every call, live or not, ends with the run's error.
    public Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next) =>
        call.Recorded is null && call.Replay.Drained && !call.Replay.Poisoned ? next(call, run) : ReplayAsync(call, run, next);

    private static async Task<StepOutcome> ReplayAsync(StepCall call, IStepRun run, StepHandler next)
    {
        if (call.Recorded is { } row)
        {
            await call.Replay.TurnAsync(call.Step);
            return StepOutcome.FromJournal(row);
        }

        if (call.Replay.Poisoned)
        {
            // Another branch no longer matches the journal: this call's effect must not happen in a run that fails.
            await call.Replay.DrainedAsync();
        }

        var outcome = await next(call, run);
        await call.Replay.DrainedAsync();
        return outcome;
    }
}
