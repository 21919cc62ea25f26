using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Spine.Errors;
using Spine.Tests.Infrastructure;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Tests.Budgets;

/// <summary>What <see cref="BudgetWorkflow"/> does: model calls (each followed by a priced tool call when asked), and whether it catches a refusal.</summary>
public sealed record BudgetInput(int Calls, string? ChatClient = MeteredChatClient.Large, int MaxOutputTokens = 50, bool PricedTool = false, bool CatchExhausted = false, bool ToolOnly = false, bool Parallel = false,
    bool WaitForGo = false);

/// <summary>
/// Model calls, one after another, each answered by the client that took it. Registered under several workflow types,
/// each with its own budget settings (see <see cref="Infrastructure.ClusterFixture"/>).
/// </summary>
public sealed class BudgetWorkflow : IWorkflow<BudgetInput, string[]>
{
    public async Task<string[]> RunAsync(IWorkflowContext context, BudgetInput input)
    {
        var answers = new List<string>();
        if (input.Parallel)
        {
            // Every model call at once: the run's ceiling must hold across calls deciding together.
            var calls = Enumerable.Range(1, input.Calls).Select(i => context.CallModelAsync(
                [new ChatMessage(ChatRole.User, "question 1: how many tokens does this question take?")],
                new ChatOptions { MaxOutputTokens = input.MaxOutputTokens, ConversationId = context.RunId },
                input.ChatClient)).ToList();
            foreach (var call in calls)
            {
                try
                {
                    answers.Add((await call).Text);
                }
                catch (BudgetExhaustedException e)
                {
                    answers.Add($"exhausted:{e.Scope}:{e.Step}");
                }
            }

            return [.. answers];
        }

        try
        {
            for (var i = 1; i <= input.Calls; i++)
            {
                if (!input.ToolOnly)
                {
                    var response = await context.CallModelAsync(
                        [new ChatMessage(ChatRole.User, $"question {i}: how many tokens does this question take?")],
                        new ChatOptions { MaxOutputTokens = input.MaxOutputTokens, ConversationId = context.RunId },
                        input.ChatClient);
                    answers.Add(response.Text);
                }

                if (input.PricedTool || input.ToolOnly)
                {
                    var output = await context.CallToolAsync(PricedTool.Name, JsonSerializer.SerializeToElement(new { text = $"call {i}" }));
                    answers.Add(output.GetProperty("text").GetString()!);
                }
            }
        }
        catch (BudgetExhaustedException e) when (input.CatchExhausted)
        {
            answers.Add($"exhausted:{e.Scope}:{e.Step}");
        }

        if (input.WaitForGo)
        {
            answers.Add(await context.WaitForSignalAsync<string>("go", TimeSpan.FromMinutes(5)));
        }

        return [.. answers];
    }
}

/// <summary>
/// A chat client of a named model that reports its usage (10 input and 20 output tokens per call, or none when
/// silent) and counts its calls per run (the run id comes as the conversation id, which is not counted as input).
/// </summary>
public sealed class MeteredChatClient(string model, bool reportUsage = true) : TestChatClient
{
    public const string Large = "metered";
    public const string Mini = "metered-mini";
    public const string Silent = "metered-silent";

    private static readonly ConcurrentDictionary<string, int> CallsByRun = new();

    public static int Calls(string runId) => CallsByRun.GetValueOrDefault(runId);

    public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var runId = options?.ConversationId ?? "?";
        CallsByRun.AddOrUpdate(runId, 1, (_, n) => n + 1);
        var response = new ChatResponse(new ChatMessage(ChatRole.Assistant, $"{model} answers"))
        {
            ModelId = model,
            Usage = reportUsage ? new UsageDetails { InputTokenCount = 10, OutputTokenCount = 20, TotalTokenCount = 30 } : null,
        };
        return Task.FromResult(response);
    }

    public override object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("test", null, model) : null;
}

/// <summary>A tool that costs 0.25 per successful call and echoes its text.</summary>
public sealed class PricedTool : ITool
{
    public const string Name = "test_priced";

    public ToolDefinition Definition { get; } = new()
    {
        Name = Name,
        Version = "1.0.0",
        Description = "Echoes its text, at a price.",
        InputSchema = """{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}""",
        OutputSchema = """{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}""",
        Effect = ToolEffect.ReadOnly,
        CostPerCall = 0.25m,
    };

    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context) =>
        Task.FromResult(JsonSerializer.SerializeToElement(new { text = arguments.GetProperty("text").GetString() }));
}

/// <summary>
/// Holds back every single settlement sent to the budget of an account whose id starts with <see cref="Prefix"/>
/// (a message slow to arrive), so that a test sees what the run does without it.
/// </summary>
public sealed class SlowSettlementFilter : IIncomingGrainCallFilter
{
    public const string Prefix = "slow-settle-";

    public async Task Invoke(IIncomingGrainCallContext context)
    {
        if (context.InterfaceMethod?.Name == nameof(Spine.Budgets.IBudgetGrain.SettleAsync)
            && context.TargetId.Key.ToString()!.StartsWith(Prefix, StringComparison.Ordinal))
        {
            await Task.Delay(TimeSpan.FromSeconds(5));
        }

        await context.Invoke();
    }
}
