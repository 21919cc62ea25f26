using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Spine.Breakers;
using Spine.Errors;
using Spine.Recovery;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Tests.Infrastructure;

/// <summary>Counts how often each side effect really ran, per run, across re-executions.</summary>
public static class Effects
{
    private static readonly ConcurrentDictionary<string, int> Counts = new();

    public static void Count(string runId, string name) => Counts.AddOrUpdate($"{runId}/{name}", 1, (_, n) => n + 1);

    public static int Of(string runId, string name) => Counts.GetValueOrDefault($"{runId}/{name}");
}

public sealed record StepsInput(int Steps, int SleepMilliseconds = 0);

/// <summary>Numbered side effects, with an optional durable sleep in the middle.</summary>
[Workflow("test.steps")]
public sealed class StepsWorkflow : IWorkflow<StepsInput, int>
{
    public async Task<int> RunAsync(IWorkflowContext context, StepsInput input)
    {
        var total = 0;
        for (var i = 1; i <= input.Steps; i++)
        {
            if (input.SleepMilliseconds > 0 && i == input.Steps / 2 + 1)
            {
                await context.SleepAsync(TimeSpan.FromMilliseconds(input.SleepMilliseconds));
            }

            var n = i;
            total += await context.RunAsync($"step-{n}", s =>
            {
                Effects.Count(s.RunId, s.Name);
                return Task.FromResult(n);
            });
        }

        return total;
    }
}

/// <summary>A workflow whose first step name the test changes between executions, as a careless deploy would.</summary>
[Workflow("test.flip")]
public sealed class FlipWorkflow : IWorkflow<int, string>
{
    public static ConcurrentDictionary<string, string> FirstStepName { get; } = new();

    public async Task<string> RunAsync(IWorkflowContext context, int sleepMilliseconds)
    {
        var first = await context.RunAsync(FirstStepName.GetValueOrDefault(context.RunId, "charge-card"), _ => Task.FromResult("done"));
        await context.SleepAsync(TimeSpan.FromMilliseconds(sleepMilliseconds));
        return first + await context.RunAsync("after", _ => Task.FromResult("!"));
    }
}

public sealed record RecordedValues(DateTimeOffset Now, long Random, Guid Guid);

/// <summary>Reads the clock and randomness through the context, then sleeps durably.</summary>
[Workflow("test.values")]
public sealed class ValuesWorkflow : IWorkflow<int, RecordedValues>
{
    public async Task<RecordedValues> RunAsync(IWorkflowContext context, int sleepMilliseconds)
    {
        var values = new RecordedValues(await context.NowAsync(), await context.RandomAsync(), await context.NewGuidAsync());
        await context.SleepAsync(TimeSpan.FromMilliseconds(sleepMilliseconds));
        return values;
    }
}

public sealed record ToolCallInput(string Tool, JsonElement Arguments, bool Escalate = false);

/// <summary>Calls one tool with the given arguments and returns its output.</summary>
[Workflow("test.tool")]
public sealed class ToolCallWorkflow : IWorkflow<ToolCallInput, JsonElement>
{
    public Task<JsonElement> RunAsync(IWorkflowContext context, ToolCallInput input) =>
        context.CallToolAsync(input.Tool, input.Arguments, options: input.Escalate ? new StepOptions { EscalateToOperator = true } : null);
}

/// <summary>Returns a result of the requested size (for the payload ceiling).</summary>
[Workflow("test.big")]
public sealed class BigResultWorkflow : IWorkflow<int, string>
{
    public Task<string> RunAsync(IWorkflowContext context, int bytes) =>
        context.RunAsync("produce", _ => Task.FromResult(new string('x', bytes)));
}

/// <summary>
/// A tool with a strict contract: input {x: integer >= 0}, output {y: string}. For x = 13 it breaks its
/// own output contract, so that output validation can be seen to work.
/// </summary>
public sealed class EchoTool : ITool
{
    public static ConcurrentDictionary<string, int> Invocations { get; } = new();

    public ToolDefinition Definition { get; } = new()
    {
        Name = "test_echo",
        Version = "1.0.0",
        Description = "Echoes x as a string.",
        InputSchema = """{"type":"object","properties":{"x":{"type":"integer","minimum":0}},"required":["x"],"additionalProperties":false}""",
        OutputSchema = """{"type":"object","properties":{"y":{"type":"string"}},"required":["y"]}""",
    };

    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        Invocations.AddOrUpdate(context.RunId, 1, (_, n) => n + 1);
        var x = arguments.GetProperty("x").GetInt32();
        return Task.FromResult(x == 13
            ? JsonSerializer.SerializeToElement(new { y = 13 })
            : JsonSerializer.SerializeToElement(new { y = x.ToString(System.Globalization.CultureInfo.InvariantCulture) }));
    }
}

/// <summary>A model that first calls a tool that does not exist, then calls a real tool with arguments that break its schema, then answers.</summary>
public sealed class MisbehavingChatClient : TestChatClient
{
    public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var turn = messages.Count(m => m.Role == ChatRole.Assistant) + 1;
        ChatMessage reply = turn switch
        {
            1 => new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("c1", "delete_everything", new Dictionary<string, object?> { ["really"] = true })]),
            2 => new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("c2", "calculator", new Dictionary<string, object?> { ["expr"] = 1 })]),
            3 => new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("c3", "calculator", new Dictionary<string, object?> { ["expression"] = "2+2" })]),
            _ => new ChatMessage(ChatRole.Assistant, "recovered"),
        };
        return Task.FromResult(new ChatResponse(reply) { Usage = new UsageDetails { InputTokenCount = 10, OutputTokenCount = 5 } });
    }
}

/// <summary>A tool whose first call per run hangs until the run's activation shuts down; later calls pass.</summary>
public sealed class GateTool : ITool
{
    private static readonly ConcurrentDictionary<string, List<string>> Calls = new();

    public static IReadOnlyList<string> Keys(string runId)
    {
        var keys = Calls.GetOrAdd(runId, _ => []);
        lock (keys)
        {
            return keys.ToList();
        }
    }

    public ToolDefinition Definition { get; } = new()
    {
        Name = "test_gate",
        Version = "1.0.0",
        Description = "Waits at a gate.",
        InputSchema = """{"type":"object"}""",
        OutputSchema = """{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}""",
    };

    public async Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        var keys = Calls.GetOrAdd(context.RunId, _ => []);
        int count;
        lock (keys)
        {
            keys.Add(context.IdempotencyKey);
            count = keys.Count;
        }

        if (count == 1)
        {
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }

        return JsonSerializer.SerializeToElement(new { ok = true });
    }
}

/// <summary>A model that calls test_gate once, then answers "passed"; it counts how often it is asked, per prompt.</summary>
public sealed class GatekeeperChatClient : TestChatClient
{
    private static readonly ConcurrentDictionary<string, int> Asked = new();

    public static int Calls(string prompt) => Asked.GetValueOrDefault(prompt);

    public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var history = messages.ToList();
        Asked.AddOrUpdate(history.First(m => m.Role == ChatRole.User).Text, 1, (_, n) => n + 1);
        var reply = history.Any(m => m.Role == ChatRole.Tool)
            ? new ChatMessage(ChatRole.Assistant, "passed")
            : new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("g1", "test_gate", new Dictionary<string, object?>())]);
        return Task.FromResult(new ChatResponse(reply));
    }
}

/// <summary>One logged tool call: which run, what action, with which idempotency key, which attempt.</summary>
public sealed record EffectCall(string RunId, string Action, string Key, int Attempt);

/// <summary>
/// A tool that records every call in order and fails on request: <c>fail</c> = <c>terminal</c> (always, not retried),
/// <c>transient-once</c> (the first attempt), <c>transient-always</c>, <c>http503</c>/<c>http404</c> (the first attempt),
/// <c>failTimes</c> = n (the first n attempts, transiently).
/// </summary>
public sealed class EffectTool : ITool
{
    private static readonly List<EffectCall> Log = [];

    public static IReadOnlyList<EffectCall> CallsOf(string runId)
    {
        lock (Log)
        {
            return Log.Where(c => c.RunId == runId).ToList();
        }
    }

    public ToolDefinition Definition { get; } = new()
    {
        Name = "test_effect",
        Version = "1.0.0",
        Description = "Records an action; fails on request.",
        InputSchema = """{"type":"object","properties":{"action":{"type":"string"},"fail":{"type":["string","null"]},"failTimes":{"type":"integer"}},"required":["action"]}""",
        OutputSchema = """{"type":"object","properties":{"done":{"type":"string"}},"required":["done"]}""",
        Retry = new RetryPolicy { MaxAttempts = 4, InitialDelay = TimeSpan.FromMilliseconds(200), Multiplier = 2, Jitter = 0 },
        Breaker = new BreakerPolicy { Enabled = false },
    };

    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        var action = arguments.GetProperty("action").GetString()!;
        lock (Log)
        {
            Log.Add(new EffectCall(context.RunId, action, context.IdempotencyKey, context.Attempt));
        }

        var fail = arguments.TryGetProperty("fail", out var f) ? f.GetString() : null;
        var failTimes = arguments.TryGetProperty("failTimes", out var n) ? n.GetInt32() : 0;
        if (context.Attempt <= failTimes)
        {
            throw new TransientException($"{action}: injected transient failure {context.Attempt}/{failTimes}");
        }

        return fail switch
        {
            "terminal" => throw new TerminalException($"{action}: injected terminal failure"),
            "transient-always" => throw new TransientException($"{action}: injected transient failure"),
            "transient-once" when context.Attempt == 1 => throw new TransientException($"{action}: injected transient failure"),
            "http503" when context.Attempt == 1 => throw new HttpRequestException("service unavailable", null, System.Net.HttpStatusCode.ServiceUnavailable),
            "http404" => throw new HttpRequestException("not found", null, System.Net.HttpStatusCode.NotFound),
            _ => Task.FromResult(JsonSerializer.SerializeToElement(new { done = action })),
        };
    }
}

/// <summary>A tool that fails transiently while <see cref="Healthy"/> is false; its breaker trips quickly.</summary>
public sealed class BreakerTool(string name) : ITool
{
    public BreakerTool()
        : this("test_breaker")
    {
    }

    public static volatile bool Healthy = true;
    private static int _invocations;

    public static int Invocations => Volatile.Read(ref _invocations);

    public static BreakerPolicy Policy { get; } = new()
    {
        MinimumCalls = 4,
        FailureRateThreshold = 0.5,
        CoolDown = TimeSpan.FromSeconds(2),
        CacheFor = TimeSpan.FromMilliseconds(100),
        Window = TimeSpan.FromSeconds(30),
    };

    public ToolDefinition Definition { get; } = new()
    {
        Name = name,
        Version = "1.0.0",
        Description = "Fails while unhealthy.",
        InputSchema = """{"type":"object"}""",
        OutputSchema = """{"type":"object"}""",
        Retry = new RetryPolicy { MaxAttempts = 40, InitialDelay = TimeSpan.FromMilliseconds(100), MaxDelay = TimeSpan.FromMilliseconds(300), Jitter = 0 },
        Breaker = Policy,
    };

    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        Interlocked.Increment(ref _invocations);
        return Healthy
            ? Task.FromResult(JsonSerializer.SerializeToElement(new { ok = true }))
            : throw new TransientException("test_breaker is down");
    }
}

public sealed record SagaInput(string? FailShip = "terminal", string? FailRelease = null, int SleepMilliseconds = 0);

/// <summary>reserve (undo: release), charge (undo: refund), optional sleep, ship: the saga shape.</summary>
[Workflow("test.saga")]
public sealed class SagaWorkflow : IWorkflow<SagaInput, string>
{
    public async Task<string> RunAsync(IWorkflowContext context, SagaInput input)
    {
        await context.CallToolAsync("test_effect", Args(new { action = "reserve" }),
            options: new StepOptions { Compensation = new CompensationCall("test_effect", Args(new { action = "release", fail = input.FailRelease })) });
        await context.CallToolAsync("test_effect", Args(new { action = "charge" }),
            options: new StepOptions { Compensation = new CompensationCall("test_effect", Args(new { action = "refund" })) });
        if (input.SleepMilliseconds > 0)
        {
            await context.SleepAsync(TimeSpan.FromMilliseconds(input.SleepMilliseconds));
        }

        await context.CallToolAsync("test_effect", Args(new { action = "ship", fail = input.FailShip }));
        return "shipped";
    }

    private static JsonElement Args(object value) => JsonSerializer.SerializeToElement(value);
}

/// <summary>
/// Four numbered steps; step 3 obeys the run parameter <c>mode</c>: <c>broken</c> fails terminally,
/// <c>flaky</c> fails transiently (2 attempts, then the run is dead-lettered), anything else succeeds.
/// </summary>
[Workflow("test.params")]
public sealed class ParameterWorkflow : IWorkflow<int, string>
{
    public async Task<string> RunAsync(IWorkflowContext context, int multiplier)
    {
        var total = 0;
        for (var i = 1; i <= 4; i++)
        {
            var n = i;
            total += await context.RunAsync($"step-{n}", s =>
            {
                Effects.Count(s.RunId, s.Name);
                if (n == 3)
                {
                    switch (context.GetParameter("mode"))
                    {
                        case "broken":
                            throw new TerminalException("step 3 is broken");
                        case "flaky":
                            throw new TransientException("step 3 is flaky");
                    }
                }

                return Task.FromResult(n * multiplier);
            }, new StepOptions { Retry = new RetryPolicy { MaxAttempts = 2, InitialDelay = TimeSpan.FromMilliseconds(50), Jitter = 0 } });
        }

        return $"{context.GetParameter("mode")}:{total}";
    }
}

/// <summary>
/// One step whose failures follow the run parameter <c>mode</c> (as in <see cref="ParameterWorkflow"/>); the
/// workflow is registered with EscalateToOperator, so exhausting the retries waits for an operator.
/// </summary>
public sealed class EscalatingWorkflow : IWorkflow<int, string>
{
    public async Task<string> RunAsync(IWorkflowContext context, int value)
    {
        var result = await context.RunAsync("fragile", s =>
        {
            Effects.Count(s.RunId, s.Name);
            return context.GetParameter("mode") == "fixed" || Effects.Of(s.RunId, "healed") > 0
                ? Task.FromResult(value)
                : throw new TransientException("fragile is down");
        }, new StepOptions { Retry = new RetryPolicy { MaxAttempts = 2, InitialDelay = TimeSpan.FromMilliseconds(50), Jitter = 0 } });
        var after = await context.RunAsync("after", _ => Task.FromResult(1));
        return $"{result + after}";
    }
}

/// <summary>A model that answers HTTP 429 to the first call of each prompt, then replies.</summary>
public sealed class RateLimitedChatClient : TestChatClient
{
    private static readonly ConcurrentDictionary<string, int> Asked = new();

    public static int Calls(string prompt) => Asked.GetValueOrDefault(prompt);

    public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var prompt = messages.First(m => m.Role == ChatRole.User).Text;
        var n = Asked.AddOrUpdate(prompt, 1, (_, c) => c + 1);
        return n == 1
            ? throw new HttpRequestException("rate limited", null, System.Net.HttpStatusCode.TooManyRequests)
            : Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, "after the rate limit")));
    }
}

/// <summary>
/// Two side effects, the first under a step name the caller chooses; <c>"unencodable"</c> names it with a lone
/// surrogate, which no grain call can carry and the database driver refuses to encode.
/// </summary>
[Workflow("test.named")]
public sealed class NamedStepWorkflow : IWorkflow<string, int>
{
    public async Task<int> RunAsync(IWorkflowContext context, string stepName)
    {
        var first = await context.RunAsync(stepName == "unencodable" ? "poison-\uD800" : stepName, s =>
        {
            Effects.Count(s.RunId, "named");
            return Task.FromResult(1);
        });
        return first + await context.RunAsync("second", s =>
        {
            Effects.Count(s.RunId, "second");
            return Task.FromResult(1);
        });
    }
}

/// <summary>
/// Context calls issued together with <c>Task.WhenAll</c>: <c>steps</c> (three steps finishing out of issue
/// order), <c>sleeps</c> (a long sleep begun while a shorter one waits), <c>escalations</c> (two steps that escalate to an operator).
/// </summary>
[Workflow("test.parallel")]
public sealed class ParallelWorkflow : IWorkflow<string, string>
{
    public static ConcurrentDictionary<string, TaskCompletionSource> Gates { get; } = new();

    public async Task<string> RunAsync(IWorkflowContext context, string mode)
    {
        switch (mode)
        {
            case "steps":
                var steps = await Task.WhenAll(new[] { ("a", 300), ("b", 0), ("c", 150) }.Select(p => context.RunAsync(p.Item1, async s =>
                {
                    await Task.Delay(p.Item2);
                    if (p.Item1 != "b")
                    {
                        // Held until the test lets go, so the run can be deactivated while a and c are in flight.
                        try
                        {
                            await Gates.GetOrAdd(s.RunId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task.WaitAsync(s.CancellationToken);
                        }
                        catch (OperationCanceledException)
                        {
                            Effects.Count(s.RunId, s.Name + "-stopped");
                            throw;
                        }
                    }

                    Effects.Count(s.RunId, s.Name);
                    return $"{s.Name}{s.Step}";
                })));
                var last = await context.RunAsync("after", s => Task.FromResult(s.Step));
                return $"{string.Join(",", steps)};{last}";
            case "chains" or "sleepy-chains" or "chains-a-first":
                // Two branches of two calls each. In "chains" b's calls finish before a's first one, so b's
                // second call took step 3 and a's second step 4; in "sleepy-chains" a's first call is a durable
                // sleep; in "chains-a-first" a's first call finishes first, so a's second call took step 3.
                var aFirst = mode == "chains-a-first";
                var chains = await Task.WhenAll(
                    ChainAsync(context, "a", mode == "sleepy-chains", aFirst ? 0 : 400),
                    ChainAsync(context, "b", false, aFirst ? 400 : 0));
                return string.Join("|", chains);
            case "sleeps":
                // The longer sleep begins while the shorter one waits.
                var shorter = context.SleepAsync(TimeSpan.FromSeconds(20));
                await context.RunAsync("between", async _ =>
                {
                    await Task.Delay(300);
                    return 0;
                });
                await Task.WhenAll(shorter, context.SleepAsync(TimeSpan.FromMinutes(10)));
                return "slept";
            case "escalations":
                var fragile = new StepOptions { EscalateToOperator = true, Retry = new RetryPolicy { MaxAttempts = 1 } };
                var values = await Task.WhenAll(
                    context.RunAsync<int>("left", _ => throw new TransientException("left is down"), fragile),
                    context.RunAsync<int>("right", _ => throw new TransientException("right is down"), fragile));
                return $"{values[0] + values[1]}";
            default:
                throw new ArgumentException(mode);
        }
    }

    private static async Task<string> ChainAsync(IWorkflowContext context, string branch, bool sleepFirst, int firstMilliseconds)
    {
        int first;
        if (sleepFirst)
        {
            await context.SleepAsync(TimeSpan.FromMilliseconds(400));
            first = 0;
        }
        else
        {
            first = await context.RunAsync($"{branch}1", async s =>
            {
                await Task.Delay(firstMilliseconds);
                return s.Step;
            });
        }

        var second = await context.RunAsync($"{branch}2", async s =>
        {
            if (branch == "a")
            {
                try
                {
                    await Gates.GetOrAdd(s.RunId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task.WaitAsync(s.CancellationToken);
                }
                catch (OperationCanceledException)
                {
                    Effects.Count(s.RunId, s.Name + "-stopped");
                    throw;
                }
            }

            Effects.Count(s.RunId, s.Name);
            return s.Step;
        });
        return $"{branch}:{first},{second}";
    }
}

/// <summary>A tool that fails transiently while <see cref="Down"/> holds; its breaker opens after two calls and cools down in 300 ms.</summary>
public sealed class DownTool(string name, TimeSpan maxCircuitWait) : ITool
{
    public static volatile bool Down;
    private static int _invocations;

    public static int Invocations => Volatile.Read(ref _invocations);

    public ToolDefinition Definition { get; } = new()
    {
        Name = name,
        Version = "1.0.0",
        Description = "Fails while down.",
        InputSchema = """{"type":"object"}""",
        OutputSchema = """{"type":"object"}""",
        Retry = new RetryPolicy { MaxAttempts = 100, InitialDelay = TimeSpan.FromMilliseconds(50), MaxDelay = TimeSpan.FromMilliseconds(100), Jitter = 0, MaxCircuitWait = maxCircuitWait },
        Breaker = new BreakerPolicy
        {
            MinimumCalls = 2,
            FailureRateThreshold = 0.5,
            CoolDown = TimeSpan.FromMilliseconds(300),
            CacheFor = TimeSpan.FromMilliseconds(50),
            Window = TimeSpan.FromSeconds(30),
        },
    };

    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        Interlocked.Increment(ref _invocations);
        return Down
            ? throw new TransientException($"{name} is down")
            : Task.FromResult(JsonSerializer.SerializeToElement(new { ok = true }));
    }
}

/// <summary>Two calls of one tool with different arguments, then a sleep; the test swaps their order between executions, as a careless deploy would.</summary>
[Workflow("test.reorder")]
public sealed class ReorderWorkflow : IWorkflow<int, string>
{
    public static ConcurrentDictionary<string, bool> Swapped { get; } = new();

    public async Task<string> RunAsync(IWorkflowContext context, int sleepMilliseconds)
    {
        var actions = Swapped.GetValueOrDefault(context.RunId) ? new[] { "refund", "charge" } : ["charge", "refund"];
        foreach (var action in actions)
        {
            await context.CallToolAsync("test_effect", JsonSerializer.SerializeToElement(new { action }));
        }

        await context.SleepAsync(TimeSpan.FromMilliseconds(sleepMilliseconds));
        return "done";
    }
}

/// <summary>A tool that takes longer than its 200 ms timeout: whether its effect happened is unknown to the run.</summary>
public sealed class SlowTool : ITool
{
    public ToolDefinition Definition { get; } = new()
    {
        Name = "test_slow",
        Version = "1.0.0",
        Description = "Answers too late.",
        InputSchema = """{"type":"object"}""",
        OutputSchema = """{"type":"object"}""",
        Timeout = TimeSpan.FromMilliseconds(200),
        Retry = new RetryPolicy { MaxAttempts = 2, InitialDelay = TimeSpan.FromMilliseconds(50), Jitter = 0 },
        Breaker = new BreakerPolicy { Enabled = false },
    };

    public async Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        await Task.Delay(TimeSpan.FromSeconds(5), context.CancellationToken);
        return JsonSerializer.SerializeToElement(new { });
    }
}

/// <summary>A step that times out, registered with a compensation (the run then fails).</summary>
[Workflow("test.timeout-saga")]
public sealed class TimeoutSagaWorkflow : IWorkflow<int, string>
{
    public async Task<string> RunAsync(IWorkflowContext context, int ignored)
    {
        await context.CallToolAsync("test_effect", JsonSerializer.SerializeToElement(new { action = "book" }),
            options: new StepOptions { Compensation = new CompensationCall("test_effect", JsonSerializer.SerializeToElement(new { action = "unbook" })) });
        await context.CallToolAsync("test_slow", JsonSerializer.SerializeToElement(new { }),
            options: new StepOptions { Compensation = new CompensationCall("test_effect", JsonSerializer.SerializeToElement(new { action = "undo-slow" })) });
        return "done";
    }
}

/// <summary>One step that takes the given number of milliseconds.</summary>
[Workflow("test.long-step")]
public sealed class LongStepWorkflow : IWorkflow<int, int>
{
    public Task<int> RunAsync(IWorkflowContext context, int milliseconds) =>
        context.RunAsync("long", async s =>
        {
            Effects.Count(s.RunId, "long-started");
            await Task.Delay(milliseconds, s.CancellationToken);
            return milliseconds;
        });
}
