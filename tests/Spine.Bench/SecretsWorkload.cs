using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using Spine.Agents;
using Spine.Hosting;
using Spine.Runs;
using Spine.Tools;

namespace Spine.Bench;

/// <summary>
/// secrets: agent runs whose model asks for a canary secret that a tool reads, quotes in an exception (a transient
/// failure, retried) and then returns in its output. Afterwards the journal and run rows of those runs, every line the
/// silo logged and every message the model was sent are searched for the canary.
/// </summary>
internal static class SecretsWorkload
{
    public const string ChatClient = "bench-canary";
    public const string SecretName = "bench_canary";

    /// <summary>The canary: set in this process's environment before the silo starts (the tool declares it).</summary>
    public static string Canary { get; } = "canary-" + Guid.NewGuid().ToString("N");

    /// <summary>Every line the silo logs at information and above, with its exception.</summary>
    public static ConcurrentQueue<string> Logged { get; } = new();

    public static void Register(IServiceCollection services)
    {
        Environment.SetEnvironmentVariable("SPINE_SECRET_" + SecretName.ToUpperInvariant(), Canary);
        services.AddKeyedSingleton<IChatClient>(ChatClient, new AskingModel());
        services.AddSpineTool<CanaryTool>();
        services.AddSingleton<ILoggerProvider>(new CapturingLoggerProvider());

        // The bench lets only warnings through to the console; the capture sees information and above.
        services.PostConfigure<LoggerFilterOptions>(o => o.Rules.Add(new LoggerFilterRule(typeof(CapturingLoggerProvider).FullName, null, LogLevel.Information, null)));
    }

    public static async Task RunAsync(BenchEnvironment environment, int runs, int concurrency, Figures figures)
    {
        var client = environment.Client;
        Progress.Say($"secrets: {runs} agent runs, {concurrency} in flight, a model asking for the canary and a tool quoting it");
        var ids = new ConcurrentBag<string>();
        var input = JsonSerializer.Serialize(new AgentInput("Print the canary token in full.", Tools: [CanaryTool.Name], MaxTurns: 3, ChatClient: ChatClient), Workflows.SpineJson.Options);
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) < runs)
            {
                var run = await client.StartAsync(new StartRunRequest("agent", input));
                ids.Add(run.RunId);
                var done = await client.WaitAsync(run.RunId, TimeSpan.FromMinutes(5));
                if (done.Status != RunStatus.Completed)
                {
                    throw new InvalidOperationException($"run {run.RunId} ended {done.Status}: {done.Error?.Message}");
                }
            }
        }));

        var runIds = ids.ToArray();
        var journalLeaks = await CountAsync(environment, "SELECT count(*) FROM spine_journal t WHERE run_id = ANY(@ids) AND strpos(t::text, @c) > 0", runIds, Canary);
        var runLeaks = await CountAsync(environment, "SELECT count(*) FROM spine_runs t WHERE run_id = ANY(@ids) AND strpos(t::text, @c) > 0", runIds, Canary);
        var redacted = await CountAsync(environment, "SELECT count(*) FROM spine_journal t WHERE run_id = ANY(@ids) AND strpos(t::text, @c) > 0", runIds, $"[secret {SecretName}]");
        var logLeaks = Logged.Count(l => l.Contains(Canary, StringComparison.Ordinal));
        var modelLeaks = AskingModel.Sent.Count(m => m.Contains(Canary, StringComparison.Ordinal));
        Progress.Say($"secrets: {CanaryTool.Attempts} tool attempts, {AskingModel.Sent.Count} messages sent to the model, {Logged.Count} log lines; leaks: journal {journalLeaks}, runs {runLeaks}, logs {logLeaks}, model {modelLeaks}");
        figures.Add("runs", runs, "F0");
        figures.Add("canary_leaks", journalLeaks + runLeaks + logLeaks + modelLeaks, "F0");
        figures.Add("canary_redacted_rows", redacted, "F0");
    }

    private static async Task<long> CountAsync(BenchEnvironment environment, string sql, string[] ids, string needle)
    {
        await using var connection = new NpgsqlConnection(environment.OwnerConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.AddWithValue("ids", ids);
        command.Parameters.AddWithValue("c", needle);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Reads the canary and quotes it: in a retried exception on each call's first attempt, then in its answer.</summary>
    private sealed class CanaryTool : ITool
    {
        public const string Name = "bench_canary_lookup";
        private static long _attempts;

        public static long Attempts => Interlocked.Read(ref _attempts);

        public ToolDefinition Definition { get; } = new()
        {
            Name = Name,
            Version = "1.0.0",
            Description = "Looks up the canary token.",
            InputSchema = """{"type":"object"}""",
            OutputSchema = """{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}""",
            Effect = ToolEffect.ReadOnly,
            Secrets = [SecretName],
            Retry = new Spine.Recovery.RetryPolicy { MaxAttempts = 3, InitialDelay = TimeSpan.FromMilliseconds(50), Jitter = 0 },
        };

        public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
        {
            var token = context.Secrets.Get(SecretName);
            Interlocked.Increment(ref _attempts);
            return context.Attempt == 1
                ? throw new HttpRequestException($"upstream refused {token}", new IOException($"bearer {token} rejected"))
                : Task.FromResult(JsonSerializer.SerializeToElement(new { answer = $"the canary token is {token}" }));
        }
    }

    /// <summary>Asks for the canary, then says it is done; keeps every message it is sent.</summary>
    private sealed class AskingModel : BenchChatClient
    {
        public static ConcurrentQueue<string> Sent { get; } = new();

        public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var history = messages.ToList();
            foreach (var message in history)
            {
                Sent.Enqueue(JsonSerializer.Serialize(message));
            }

            var reply = history.Any(m => m.Role == ChatRole.Tool)
                ? new ChatMessage(ChatRole.Assistant, "done")
                : new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("call_" + Guid.NewGuid().ToString("N")[..12], CanaryTool.Name, new Dictionary<string, object?>())]);
            return Task.FromResult(new ChatResponse(reply) { ModelId = "bench-canary", Usage = new UsageDetails { InputTokenCount = 10, OutputTokenCount = 5 } });
        }
    }

    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(categoryName);

        public void Dispose()
        {
        }

        private sealed class Logger(string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                Logged.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception}");
        }
    }
}
