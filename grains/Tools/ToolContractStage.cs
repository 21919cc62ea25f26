using System.Text.Json;
using Spine.Errors;
using Spine.Pipeline;
using Spine.Runs;

namespace Spine.Tools;

/// <summary>
/// Attempt stage of tool calls: resolves the tool (the version the run pinned, else the newest) and checks
/// the arguments against its contract before anything reaches the tool or its breaker. A call that breaks
/// the contract fails terminally. (The output is checked where it is produced, before it is journaled.)
/// </summary>
internal sealed class ToolContractStage(ToolRegistry tools) : IAttemptStage
{
    public int Order => StepStageOrder.Contract;

    public Task<string> InvokeAsync(StepAttempt attempt, IStepRun run, AttemptHandler next)
    {
        if (attempt.Call.Tool is not { } call)
        {
            return next(attempt, run);
        }

        var registered = tools.Resolve(call.Name, call.Version());
        if (call.Arguments.ValueKind == JsonValueKind.Undefined)
        {
            throw new InvalidPayloadException($"arguments of tool '{call.Name}'", "no JSON value was given");
        }

        RunPayloads.CheckSize(call.Arguments.GetRawText(), $"arguments of tool '{call.Name}'", run.Options.MaxPayloadBytes);
        registered.ValidateInput(call.Arguments);
        System.Diagnostics.Activity.Current?.SetTag("spine.tool.version", registered.Definition.Version);
        return next(attempt with { Tool = registered }, run);
    }
}
