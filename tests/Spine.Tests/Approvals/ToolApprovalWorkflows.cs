using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;
using Spine.Approvals;
using Spine.Errors;
using Spine.Policies;
using Spine.Tests.Infrastructure;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Tests.Approvals;

/// <summary>Calls one tool directly (as workflow code would) and reports a rejection instead of failing.</summary>
[Workflow("test.tool-approval")]
public sealed class ToolApprovalWorkflow : IWorkflow<string, string>
{
    public async Task<string> RunAsync(IWorkflowContext context, string input)
    {
        try
        {
            var output = await context.CallToolAsync(input, JsonSerializer.SerializeToElement(new { x = 7 }));
            return output.GetRawText();
        }
        catch (ToolCallRejectedException e)
        {
            return $"rejected:{e.Kind}:{e.DecidedBy}:{e.Comment}";
        }
    }
}

/// <summary>
/// Two guarded calls in parallel, under a policy that permits one call of the tool per run (<see cref="OneCallRule"/>):
/// each asks a treasurer first; a call the policy then refuses reports it instead of failing.
/// </summary>
[Workflow("test.tool-approval-pair")]
public sealed class ToolApprovalPairWorkflow : IWorkflow<string, string>
{
    public static PolicyRule OneCallRule()
    {
        var rule = new PolicyRule { Name = "one-guarded-call", Workflow = "test.tool-approval-pair" };
        rule.Tools[GuardedTool.Name] = new ToolRule { MaxCalls = 1 };
        return rule;
    }

    public async Task<string> RunAsync(IWorkflowContext context, string input)
    {
        var results = await Task.WhenAll(CallAsync(context, 1), CallAsync(context, 2));
        return string.Join("|", results);
    }

    private static async Task<string> CallAsync(IWorkflowContext context, int x)
    {
        try
        {
            return (await context.CallToolAsync(GuardedTool.Name, JsonSerializer.SerializeToElement(new { x }))).GetRawText();
        }
        catch (ToolCallRejectedException e)
        {
            return $"rejected@{e.ApprovalStep}";
        }
        catch (PolicyDeniedException e)
        {
            return $"denied@{e.Step}";
        }
    }
}

/// <summary>
/// Waits for a signal and asks for an approval in parallel, then waits for "end"; a test changes the approval into a
/// guarded tool call between executions (<see cref="AsToolCall"/>), as a careless deploy would.
/// </summary>
[Workflow("test.approval-becomes-tool")]
public sealed class ApprovalBecomesToolWorkflow : IWorkflow<string, string>
{
    public static ConcurrentDictionary<string, bool> AsToolCall { get; } = new();

    public async Task<string> RunAsync(IWorkflowContext context, string input)
    {
        var go = context.WaitForSignalAsync<string>("go", TimeSpan.FromMinutes(5));
        Task<string> asked = AsToolCall.ContainsKey(context.RunId)
            ? context.CallToolAsync(GuardedTool.Name, JsonSerializer.SerializeToElement(new { x = 1 })).ContinueWith(t => t.Result.GetRawText(), TaskScheduler.Current)
            : context.RequestApprovalAsync(new ApprovalRequest("refund", "Refund it?", ["treasurer"], TimeSpan.FromMinutes(5))).ContinueWith(t => t.Result.Approved.ToString(), TaskScheduler.Current);
        await Task.WhenAll(go, asked);
        await context.WaitForSignalAsync<string>("end", TimeSpan.FromMinutes(5));
        return await asked;
    }
}

/// <summary>A tool whose every call needs a treasurer's approval, by its definition.</summary>
public sealed class GuardedTool : ITool
{
    public const string Name = "test_guarded";

    public static ConcurrentDictionary<string, int> Invocations { get; } = new();

    public ToolDefinition Definition { get; } = new()
    {
        Name = Name,
        Version = "1.0.0",
        Description = "Moves money; a treasurer approves every call.",
        InputSchema = """{"type":"object","properties":{"x":{"type":"integer"}},"required":["x"],"additionalProperties":false}""",
        OutputSchema = """{"type":"object","properties":{"moved":{"type":"integer"}},"required":["moved"]}""",
        Approval = new ToolApproval { ApproverRoles = ["treasurer"], Timeout = TimeSpan.FromMinutes(5) },
    };

    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        Invocations.AddOrUpdate(context.RunId, 1, (_, n) => n + 1);
        return Task.FromResult(JsonSerializer.SerializeToElement(new { moved = arguments.GetProperty("x").GetInt32() }));
    }
}

/// <summary>
/// A model that proposes one <c>test_echo</c> call with the confidence its prompt names (<c>confidence=0.4</c>), stated
/// as a <c>_confidence</c> argument, then answers.
/// </summary>
public sealed partial class ConfidentChatClient : TestChatClient
{
    public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var history = messages.ToList();
        if (history.Any(m => m.Role == ChatRole.Tool))
        {
            var result = history.Last(m => m.Role == ChatRole.Tool).Contents.OfType<FunctionResultContent>().Single().Result;
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, $"done: {JsonSerializer.Serialize(result)}")));
        }

        var confidence = double.Parse(ConfidencePattern().Match(history.Last(m => m.Role == ChatRole.User).Text).Groups[1].Value, CultureInfo.InvariantCulture);
        return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant,
            [new FunctionCallContent("c1", "test_echo", new Dictionary<string, object?> { ["x"] = 7, ["_confidence"] = confidence })])));
    }

    /// <summary>Interns' calls of <c>test_echo</c> need a lead's approval; a gated agent's, a reviewer's below 0.7 confidence.</summary>
    public static IEnumerable<PolicyRule> Rules()
    {
        var interns = new PolicyRule { Name = "interns", Workflow = "test.tool-approval", Role = "intern" };
        interns.Tools["test_echo"] = new ToolRule { RequireApproval = new ToolApproval { ApproverRoles = ["lead"], Timeout = TimeSpan.FromMinutes(5) } };
        interns.Tools[GuardedTool.Name] = new ToolRule();
        yield return interns;

        var gated = new PolicyRule { Name = "gated", Workflow = "agent", Role = "gated" };
        gated.Tools["test_echo"] = new ToolRule { MinConfidence = 0.7, ConfidenceApproval = new ToolApproval { ApproverRoles = ["reviewer"], Timeout = TimeSpan.FromMinutes(5) } };
        yield return gated;
    }

    [GeneratedRegex(@"confidence=([0-9.]+)")]
    private static partial Regex ConfidencePattern();
}
