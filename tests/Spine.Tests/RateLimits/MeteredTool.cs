using System.Collections.Concurrent;
using System.Text.Json;
using Spine.Errors;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Tests.RateLimits;

/// <summary>
/// A tool behind a cluster-wide limit of <see cref="PerSecond"/> calls a second: it records when each call reached
/// it and on which silo, and answers "too many requests" when its arguments ask for it.
/// </summary>
public sealed class MeteredTool(Orleans.Runtime.ILocalSiloDetails silo) : ITool
{
    public const string Name = "test_metered";

    public const int PerSecond = 20;

    /// <summary>Every call that reached the tool, by run: when, and on which silo.</summary>
    public static ConcurrentDictionary<string, ConcurrentQueue<(DateTimeOffset At, string Silo)>> Calls { get; } = new();

    /// <summary>Runs whose first call was answered with a 429 already.</summary>
    private static readonly ConcurrentDictionary<string, bool> Refused = new();

    public ToolDefinition Definition { get; } = new()
    {
        Name = Name,
        Version = "1.0.0",
        Description = "A metered API.",
        InputSchema = """{"type":"object","properties":{"n":{"type":"integer"},"refuseFirst":{"type":"boolean"}},"required":["n"]}""",
        OutputSchema = """{"type":"object"}""",
    };

    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        Calls.GetOrAdd(context.RunId, _ => new()).Enqueue((DateTimeOffset.UtcNow, silo.SiloAddress.ToString()));
        if (arguments.TryGetProperty("refuseFirst", out var refuse) && refuse.GetBoolean() && Refused.TryAdd(context.RunId, true))
        {
            throw new RateLimitedException("429 Too Many Requests", TimeSpan.FromSeconds(2));
        }

        return Task.FromResult(JsonSerializer.SerializeToElement(new { n = arguments.GetProperty("n").GetInt32() }));
    }
}

/// <summary>Input of <see cref="MeteredWorkflow"/>: how many calls, and whether the tool refuses the first.</summary>
public sealed record MeteredInput(int Calls, bool RefuseFirst = false);

/// <summary>Calls the metered tool, one call after another.</summary>
[Workflow("test.metered")]
public sealed class MeteredWorkflow : IWorkflow<MeteredInput, int>
{
    public async Task<int> RunAsync(IWorkflowContext context, MeteredInput input)
    {
        for (var i = 0; i < input.Calls; i++)
        {
            await context.CallToolAsync(MeteredTool.Name, JsonSerializer.SerializeToElement(new { n = i, refuseFirst = input.RefuseFirst }));
        }

        return input.Calls;
    }
}

/// <summary>
/// A model behind a cluster-wide limit of <see cref="TokensPerMinute"/> tokens a minute: it records when each call
/// reached it. Each call asks for <see cref="MaxOutputTokens"/>, so a call weighs a little over that many tokens.
/// </summary>
public sealed class MeteredChatClient : Infrastructure.TestChatClient
{
    public const string Key = "tpm-metered";

    public const long TokensPerMinute = 600_000;

    public const int MaxOutputTokens = 1000;

    /// <summary>Every call that reached the model, by run.</summary>
    public static ConcurrentDictionary<string, ConcurrentQueue<DateTimeOffset>> Calls { get; } = new();

    public override Task<Microsoft.Extensions.AI.ChatResponse> GetResponseAsync(
        IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, Microsoft.Extensions.AI.ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        Calls.GetOrAdd(options?.ConversationId ?? "?", _ => new()).Enqueue(DateTimeOffset.UtcNow);
        return Task.FromResult(new Microsoft.Extensions.AI.ChatResponse(new Microsoft.Extensions.AI.ChatMessage(Microsoft.Extensions.AI.ChatRole.Assistant, "ok"))
        {
            Usage = new Microsoft.Extensions.AI.UsageDetails { InputTokenCount = 12, OutputTokenCount = 1, TotalTokenCount = 13 },
        });
    }
}
