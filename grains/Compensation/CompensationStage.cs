using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;
using Spine.Tools;

namespace Spine.Compensation;

/// <summary>
/// Registers a step's compensation before its first attempt, so the declaration is durable before any
/// effect can happen. The compensating tool's version is pinned now: a later deploy does not change what
/// undoes this step.
/// </summary>
internal sealed class CompensationStage(ToolRegistry tools) : IStepStage
{
    public int Order => StepStageOrder.Compensation;

    public async Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next)
    {
        if (call.Compensation is { } compensation && !run.EventsOf(call.Step).Any(e => e.Kind == JournalKind.CompensationRegistered))
        {
            var version = compensation.Version ?? tools.TryResolve(compensation.Tool)?.Definition.Version;
            await run.AppendAsync(JournalKind.CompensationRegistered, call.Step, call.Name, true,
                RunPayloads.Write(new CompensationPayload(compensation.Tool, version, compensation.Arguments)));
        }

        return await next(call, run);
    }
}
