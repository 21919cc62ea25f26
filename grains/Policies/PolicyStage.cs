using Spine.Errors;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;
using Spine.Tools;

namespace Spine.Policies;

/// <summary>What a <see cref="JournalKind.PolicyDenied"/> row records.</summary>
internal sealed record PolicyDeniedPayload(string Rule, string Reason, string? Version, string? ArgumentsHash);

/// <summary>
/// Call stage of the control plane: a tool or model call the run's policy does not permit never reaches an attempt.
/// The denial (the rule and why) is journaled, then the step's outcome, failed with class <c>policy_denied</c>; the
/// workflow gets a <see cref="PolicyDeniedException"/>, now and on every re-execution.
/// </summary>
internal sealed class PolicyStage(PolicyEngine policies, ToolRegistry tools) : IStepStage
{
    public int Order => StepStageOrder.Policy;

    public async Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next)
    {
        var denial = call.Kind switch
        {
            JournalKind.Tool when call.Tool is { } tool => CheckTool(call, tool, run),
            JournalKind.Model when policies.Active => policies.CheckModel(run.WorkflowType, run.StartedBy, call.ChatClient),
            _ => null,
        };
        if (denial is null)
        {
            return await next(call, run);
        }

        var version = call.Tool is { } t ? tools.TryResolve(t.Name) is null ? null : Version(t) : null;
        await run.AppendAsync(JournalKind.PolicyDenied, call.Step, call.Name, false, RunPayloads.Write(new PolicyDeniedPayload(denial.Rule, denial.Reason, version, call.ArgumentsHash)));
        var error = new ErrorPayload(PolicyDenials.Kind, $"'{call.Name}' is not permitted by policy ({denial.Rule}): {denial.Reason}",
            typeof(PolicyDeniedException).FullName, ErrorClass.PolicyDenied.Name(), Step: call.Step, StepName: call.Name, StepKind: call.Kind.ToString(),
            ArgumentsHash: call.ArgumentsHash);
        var row = await run.AppendAsync(call.Kind, call.Step, call.Name, false, RunPayloads.Write(error), call.Attempt);
        return StepOutcome.FromJournal(row);
    }

    private PolicyDenial? CheckTool(StepCall call, ToolCall tool, IStepRun run)
    {
        if (tools.TryResolve(tool.Name) is null)
        {
            // An unknown tool is the contract's to refuse (unknown_tool, with the registered names): it reaches nothing.
            return null;
        }

        if (call.AllowedTools is { } allowed && !allowed.Contains(tool.Name))
        {
            return new PolicyDenial("the workflow's own tool list", $"the tool '{tool.Name}' is not among those this call may use ({string.Join(", ", allowed)})");
        }

        if (!policies.Active)
        {
            return null;
        }

        var (ofTool, all) = PolicyDenials.CountCalls(run, tool.Name);
        return policies.CheckTool(run.WorkflowType, run.StartedBy, tool.Name, Version(tool), tool.Arguments, ofTool, all);
    }

    private string? Version(ToolCall tool)
    {
        try
        {
            return tools.Resolve(tool.Name, tool.Version()).Definition.Version;
        }
        catch (UnknownToolException)
        {
            return tool.Version();
        }
    }
}

/// <summary>Reading policy denials back from a journal.</summary>
internal static class PolicyDenials
{
    /// <summary>The error kind of a denied step's outcome.</summary>
    public const string Kind = "policy_denied";

    /// <summary>The run's tool calls that reached an attempt: of <paramref name="tool"/>, and in all (calls denied or refused a budget do not count).</summary>
    public static (int OfTool, int All) CountCalls(IStepRun run, string tool)
    {
        int ofTool = 0, all = 0;
        foreach (var row in run.Outcomes)
        {
            if (row.Kind != JournalKind.Tool || (!row.Ok && RunPayloads.ReadError(row.Payload).Kind is Kind or Budgets.BudgetRefusals.Kind))
            {
                continue;
            }

            all++;
            ofTool += row.Name == tool ? 1 : 0;
        }

        return (ofTool, all);
    }
}
