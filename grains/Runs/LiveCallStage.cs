using Spine.Pipeline;

namespace Spine.Runs;

/// <summary>
/// Counts a live call towards the run's status: a run with a step executing never shows as sleeping or
/// waiting for an operator, whatever its parallel calls do. It sits outside the replay stage, so a live
/// outcome that waits for the journal's earlier outcomes to be handed back still counts as executing.
/// Recorded calls and instant ones (the time, a random value) do not change the status.
/// </summary>
internal sealed class LiveCallStage : IStepStage
{
    public int Order => StepStageOrder.LiveCalls;

    public async Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next)
    {
        if (call.Recorded is not null || call.Instant)
        {
            return await next(call, run);
        }

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
