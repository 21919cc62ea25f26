using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Compensation;

/// <summary>
/// Registers a step's compensation before its first attempt, so the declaration is durable before any
/// effect can happen. The compensating tool's version is pinned now: a later deploy does not change what
/// undoes this step.
/// </summary>
internal sealed class CompensationStage(ToolRegistry tools) : IStepStage
{
    public int Order => StepStageOrder.Compensation;

    public Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next) =>
        call.Compensation is { } compensation && !run.EventsOf(call.Step).Any(e => e.Kind == JournalKind.CompensationRegistered)
            ? RegisterAsync(call, compensation, run, next)
            : next(call, run);

    private async Task<StepOutcome> RegisterAsync(StepCall call, CompensationCall compensation, IStepRun run, StepHandler next)
    {
        // Checked now, before any effect: a compensation that could never be journaled or sent must not
        // be discovered only when the run needs it.
        RunPayloads.CheckSize(compensation.Arguments.GetRawText(), $"compensation arguments of step {call.Step} '{call.Name}'", run.Options.MaxPayloadBytes);
        var version = compensation.Version ?? tools.TryResolve(compensation.Tool)?.Definition.Version;
        await run.AppendAsync(JournalKind.CompensationRegistered, call.Step, call.Name, true,
            RunPayloads.Write(new CompensationPayload(compensation.Tool, version, compensation.Arguments)));
        return await next(call, run);
    }
}
