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

/// <summary>Which tool <see cref="BookThenCallWorkflow"/> calls second, undone by which action, and how long it waits to retry it.</summary>
public sealed record BookThenCall(string Tool, string Undo, int RetryDelayMinutes = 0);

/// <summary>Books an effect, then calls a tool (that hangs, or times out and waits long to retry); each registers a compensation.</summary>
[Workflow("test.book-then-call")]
public sealed class BookThenCallWorkflow : IWorkflow<BookThenCall, string>
{
    public async Task<string> RunAsync(IWorkflowContext context, BookThenCall input)
    {
        await context.CallToolAsync("test_effect", JsonSerializer.SerializeToElement(new { action = "book" }),
            options: new StepOptions { Compensation = new CompensationCall("test_effect", JsonSerializer.SerializeToElement(new { action = "unbook" })) });
        await context.CallToolAsync(input.Tool, JsonSerializer.SerializeToElement(new { }), options: new StepOptions
        {
            Retry = input.RetryDelayMinutes > 0 ? new RetryPolicy { MaxAttempts = 3, InitialDelay = TimeSpan.FromMinutes(input.RetryDelayMinutes), Jitter = 0 } : null,
            Compensation = new CompensationCall("test_effect", JsonSerializer.SerializeToElement(new { action = input.Undo })),
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
