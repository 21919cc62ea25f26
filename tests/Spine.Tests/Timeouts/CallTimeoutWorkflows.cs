using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Spine.Breakers;
using Spine.Errors;
using Spine.Recovery;
using Spine.Tests.Infrastructure;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Tests.Timeouts;

/// <summary>A tool that waits on its cancellation token for as long as it takes, noting when it began and whether its token fired.</summary>
public sealed class HangTool : ITool
{
    public const string Name = "test_hang";

    public static ConcurrentDictionary<string, TaskCompletionSource> Entered { get; } = new();

    public static ConcurrentDictionary<string, bool> SawCancel { get; } = new();

    public ToolDefinition Definition { get; } = new()
    {
        Name = Name,
        Version = "1.0.0",
        Description = "Waits until it is cancelled.",
        InputSchema = """{"type":"object"}""",
        OutputSchema = """{"type":"object"}""",
        Breaker = new BreakerPolicy { Enabled = false },
    };

    public async Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        Entered.GetOrAdd(context.RunId, _ => new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        try
        {
            await Task.Delay(TimeSpan.FromMinutes(10), context.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            SawCancel[context.RunId] = true;
            throw;
        }

        return JsonSerializer.SerializeToElement(new { });
    }
}

/// <summary>Books an effect, then calls the hanging tool; each registers a compensation.</summary>
[Workflow("test.cancel-in-flight")]
public sealed class CancelInFlightWorkflow : IWorkflow<int, string>
{
    public async Task<string> RunAsync(IWorkflowContext context, int ignored)
    {
        await context.CallToolAsync("test_effect", JsonSerializer.SerializeToElement(new { action = "book" }),
            options: new StepOptions { Compensation = new CompensationCall("test_effect", JsonSerializer.SerializeToElement(new { action = "unbook" })) });
        await context.CallToolAsync(HangTool.Name, JsonSerializer.SerializeToElement(new { }),
            options: new StepOptions { Compensation = new CompensationCall("test_effect", JsonSerializer.SerializeToElement(new { action = "undo-hang" })) });
        return "done";
    }
}

/// <summary>Books an effect, then calls the slow tool, which times out, and waits long to retry it; each registers a compensation.</summary>
[Workflow("test.cancel-in-retry")]
public sealed class CancelInRetryWorkflow : IWorkflow<int, string>
{
    public async Task<string> RunAsync(IWorkflowContext context, int ignored)
    {
        await context.CallToolAsync("test_effect", JsonSerializer.SerializeToElement(new { action = "book" }),
            options: new StepOptions { Compensation = new CompensationCall("test_effect", JsonSerializer.SerializeToElement(new { action = "unbook" })) });
        await context.CallToolAsync("test_slow", JsonSerializer.SerializeToElement(new { }), options: new StepOptions
        {
            Retry = new RetryPolicy { MaxAttempts = 3, InitialDelay = TimeSpan.FromMinutes(5), Jitter = 0 },
            Compensation = new CompensationCall("test_effect", JsonSerializer.SerializeToElement(new { action = "undo-slow" })),
        });
        return "done";
    }
}

/// <summary>A step bounded by its own <see cref="StepOptions.Timeout"/>, one attempt only; answers with the failure it saw.</summary>
[Workflow("test.step-timeout")]
public sealed class StepTimeoutWorkflow : IWorkflow<int, string>
{
    public async Task<string> RunAsync(IWorkflowContext context, int milliseconds)
    {
        try
        {
            await context.RunAsync("wait", async s =>
            {
                await Task.Delay(TimeSpan.FromMinutes(10), s.CancellationToken);
                return 0;
            }, new StepOptions { Timeout = TimeSpan.FromMilliseconds(milliseconds), Retry = new RetryPolicy { MaxAttempts = 1 } });
            return "no timeout";
        }
        catch (StepFailedException e)
        {
            return e.Message;
        }
    }
}

/// <summary>A chat client whose first answer to each prompt never comes (until its token fires); the second does.</summary>
public sealed class HangingChatClient : TestChatClient
{
    public const string Key = "hanging";

    private readonly ConcurrentDictionary<string, int> _calls = new();

    public override async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var prompt = messages.First(m => m.Role == ChatRole.User).Text;
        if (_calls.AddOrUpdate(prompt, 1, (_, n) => n + 1) == 1)
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
        }

        return new ChatResponse(new ChatMessage(ChatRole.Assistant, "answered"));
    }
}
