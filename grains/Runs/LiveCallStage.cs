using Spine.Pipeline;

namespace Spine.Runs;

/// <summary>
/// Counts a live call towards the run's status: a run with a step executing never shows as sleeping or
/// waiting for an operator, whatever its parallel calls do.
/// </summary>
internal sealed class LiveCallStage : IStepStage
{
    public int Order => StepStageOrder.LiveCalls;

    public async Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next)
    {
        run.EnterCall();
        StepOutcome outcome;
        try
        {
            await run.RefreshStatusAsync();
            outcome = await next(call, run);
        }
        catch
        {
            run.ExitCall();
            throw;
        }

        run.ExitCall();
        await run.RefreshStatusAsync();
        return outcome;
    }
}
