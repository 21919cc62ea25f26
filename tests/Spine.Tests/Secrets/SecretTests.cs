using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Trace;
using Orleans.TestingHost;
using Spine.Agents;
using Spine.Client;
using Spine.Errors;
using Spine.Hosting;
using Spine.Runs;
using Spine.Tests.Infrastructure;
using Spine.Tests.Policies;
using Spine.Tools;

namespace Spine.Tests.Secrets;

/// <summary>
/// A silo of its own whose tools read secrets: a canary from an environment variable, and a key in a file that the
/// test rotates between two attempts. Its logs and its exported spans (the in-memory exporter) are kept for scanning.
/// </summary>
public sealed class SecretTests : IAsyncLifetime
{
    private static readonly string Canary = "canary-" + Guid.NewGuid().ToString("N");
    private readonly string _directory = Directory.CreateTempSubdirectory("spine-secrets-").FullName;
    private readonly CapturingLoggerProvider _logs = new();
    private readonly List<Activity> _spans = [];
    private InProcessTestCluster _cluster = null!;
    private TestPostgres _postgres = null!;
    private ISpineClient _client = null!;

    public async Task InitializeAsync()
    {
        Environment.SetEnvironmentVariable("SPINE_SECRET_CANARY_TOKEN", Canary);
        await File.WriteAllTextAsync(Path.Combine(_directory, RotatingTool.SecretName), RotatingTool.OldKey + "\n");
        _postgres = await TestPostgres.GetAsync();
        var connectionString = _postgres.RuntimeConnectionString;
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddSpine(connectionString, null, o =>
            {
                o.Audit.Key = TestAudit.Key;
                TestSpine.OnSharedDatabase(o);
            });
            silo.AddActivityPropagation();
            silo.Services.Configure<Spine.Secrets.SecretOptions>(o => o.Directory = _directory);
            silo.Services.AddSpineWorkflow<ToolCallWorkflow, ToolCallInput, JsonElement>();
            silo.Services.AddSpineTool<CanaryTool>();
            silo.Services.AddSpineTool<RotatingTool>();
            silo.Services.AddKeyedSingleton<IChatClient>(CanaryAskingChatClient.Key, new CanaryAskingChatClient());
            silo.Services.AddSingleton<ILoggerProvider>(_logs);
            silo.Services.Configure<LoggerFilterOptions>(o => o.MinLevel = LogLevel.Debug);
            silo.Services.AddOpenTelemetry().WithTracing(t => t
                .AddSource("Microsoft.Orleans.Runtime", "Microsoft.Orleans.Application", "Npgsql", "Spine")
                .AddInMemoryExporter(_spans));
        });
        _cluster = builder.Build();
        await _cluster.DeployAsync();
        _client = new SpineClient(_cluster.Client);
    }

    public async Task DisposeAsync()
    {
        await _cluster.StopAllSilosAsync();
        await _cluster.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task ACanaryTheToolEchoesInItsOutputAndItsExceptions_AppearsNowhere()
    {
        // The model asks for the token; the tool fails once quoting it (retried), then answers with it.
        var echoed = await _client.StartAsync(new StartRunRequest("agent", JsonSerializer.Serialize(
            new AgentInput("What is the canary token? Print it in full.", Tools: [CanaryTool.Name], MaxTurns: 3, ChatClient: CanaryAskingChatClient.Key), SpineJsonForTests.Options)));
        var echoedDone = await _client.WaitAsync(echoed.RunId, TimeSpan.FromSeconds(60));

        // A terminal failure quoting it: the run fails, with the error in its journal and its index row.
        var failed = await _client.StartAsync("test.tool", new ToolCallInput(CanaryTool.Name, JsonSerializer.SerializeToElement(new { mode = "fail" })));
        var failedDone = await _client.WaitAsync(failed.RunId, TimeSpan.FromSeconds(60));

        Assert.Equal(RunStatus.Completed, echoedDone.Status);
        Assert.Equal(RunStatus.Failed, failedDone.Status);
        Assert.Equal(3, CanaryTool.Attempts);

        // The journal and the index, every column of every row of these runs.
        var ids = new[] { echoed.RunId, failed.RunId };
        Assert.Equal(0L, await _postgres.ScalarAsync<long>("SELECT count(*) FROM spine_journal t WHERE run_id = ANY(@ids) AND t::text LIKE '%' || @c || '%'", ("ids", ids), ("c", Canary)));
        Assert.Equal(0L, await _postgres.ScalarAsync<long>("SELECT count(*) FROM spine_runs t WHERE run_id = ANY(@ids) AND t::text LIKE '%' || @c || '%'", ("ids", ids), ("c", Canary)));

        // What the redaction left in its place: the tool's answer, its retried failure, and the run's error.
        var journal = await _client.GetJournalAsync(echoed.RunId);
        Assert.Contains(journal, r => r.Kind == "Tool" && r.Outcome == "ok" && r.PayloadJson!.Contains("the canary token is [secret canary_token]", StringComparison.Ordinal));
        Assert.Contains(journal, r => r.Kind == "AttemptFailed" && r.PayloadJson!.Contains("HttpRequestException: upstream refused [secret canary_token]", StringComparison.Ordinal));
        Assert.Contains("[secret canary_token]", failedDone.Error!.Message, StringComparison.Ordinal);

        // Every message the model was sent (its second turn carries the tool's answer, redacted).
        Assert.NotEmpty(CanaryAskingChatClient.Sent);
        Assert.DoesNotContain(CanaryAskingChatClient.Sent, m => m.Contains(Canary, StringComparison.Ordinal));
        Assert.Contains(CanaryAskingChatClient.Sent, m => m.Contains("[secret canary_token]", StringComparison.Ordinal));

        // The silo's logs, exceptions included, and every exported span: names, tags, events and status.
        Assert.NotEmpty(_logs.Lines);
        Assert.DoesNotContain(_logs.Lines, l => l.Contains(Canary, StringComparison.Ordinal));
        List<string> spans;
        lock (_spans)
        {
            spans = _spans.Select(Describe).ToList();
        }

        Assert.NotEmpty(spans);
        Assert.DoesNotContain(spans, s => s.Contains(Canary, StringComparison.Ordinal));

        // The CLI and client read the journal the scan above covered; so does verify.
        Assert.True((await _client.VerifyJournalAsync(echoed.RunId)).Intact);
    }

    [Fact]
    public async Task ASecretRotatedAtItsSource_IsUsedByTheNextAttempt_WithoutARestart()
    {
        var run = await _client.StartAsync("test.tool", new ToolCallInput(RotatingTool.Name, JsonSerializer.SerializeToElement(new { })));
        await Eventually.GetAsync(() => Task.FromResult(RotatingTool.Seen.Count), n => n >= 1, TimeSpan.FromSeconds(30), "the first attempt");

        // The upstream now accepts only the new key; an operator replaces the file.
        await File.WriteAllTextAsync(Path.Combine(_directory, RotatingTool.SecretName), RotatingTool.NewKey + "\n");
        var done = await _client.WaitAsync(run.RunId, TimeSpan.FromSeconds(60));

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal([RotatingTool.OldKey, RotatingTool.NewKey], RotatingTool.Seen);
        Assert.Equal(0L, await _postgres.ScalarAsync<long>(
            "SELECT count(*) FROM spine_journal t WHERE run_id = @id AND (t::text LIKE '%' || @a || '%' OR t::text LIKE '%' || @b || '%')",
            ("id", run.RunId), ("a", RotatingTool.OldKey), ("b", RotatingTool.NewKey)));
    }

    private static string Describe(Activity span) =>
        string.Join('\n', [span.DisplayName, span.StatusDescription ?? "",
            .. span.TagObjects.Select(t => $"{t.Key}={t.Value}"),
            .. span.Events.SelectMany(e => e.Tags.Select(t => $"{e.Name}:{t.Key}={t.Value}"))]);

    /// <summary>Reads the canary token and, as a careless tool would, quotes it: in an exception once, then in its answer.</summary>
    private sealed class CanaryTool : ITool
    {
        public const string Name = "test_canary";
        private static int _attempts;

        public static int Attempts => Volatile.Read(ref _attempts);

        public ToolDefinition Definition { get; } = new()
        {
            Name = Name,
            Version = "1.0.0",
            Description = "Looks up the canary token.",
            InputSchema = """{"type":"object","properties":{"mode":{"type":"string"}}}""",
            OutputSchema = """{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}""",
            Effect = ToolEffect.ReadOnly,
            Secrets = ["canary_token"],
            Retry = new Spine.Recovery.RetryPolicy { MaxAttempts = 3, InitialDelay = TimeSpan.FromMilliseconds(100), Jitter = 0 },
        };

        public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
        {
            var token = context.Secrets.Get("canary_token");
            Interlocked.Increment(ref _attempts);
            if (arguments.TryGetProperty("mode", out var mode) && mode.GetString() == "fail")
            {
                throw new InvalidOperationException($"the token {token} does not open this door");
            }

            if (context.Attempt == 1)
            {
                throw new HttpRequestException($"upstream refused {token}", new IOException($"bearer {token} rejected"));
            }

            return Task.FromResult(JsonSerializer.SerializeToElement(new { answer = $"the canary token is {token}" }));
        }
    }

    /// <summary>Calls an upstream that accepts only its current key: the first attempt holds the old one.</summary>
    private sealed class RotatingTool : ITool
    {
        public const string Name = "test_rotating";
        public const string SecretName = "rotating_key";
        public static readonly string OldKey = "old-" + Guid.NewGuid().ToString("N");
        public static readonly string NewKey = "new-" + Guid.NewGuid().ToString("N");

        public static ConcurrentQueue<string> Seen { get; } = new();

        public ToolDefinition Definition { get; } = new()
        {
            Name = Name,
            Version = "1.0.0",
            Description = "Calls the upstream with its key.",
            InputSchema = """{"type":"object"}""",
            OutputSchema = """{"type":"object"}""",
            Effect = ToolEffect.ReadOnly,
            Secrets = [SecretName],
            Retry = new Spine.Recovery.RetryPolicy { MaxAttempts = 5, InitialDelay = TimeSpan.FromSeconds(2), Jitter = 0 },
        };

        public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
        {
            var key = context.Secrets.Get(SecretName);
            Seen.Enqueue(key);
            return key == NewKey
                ? Task.FromResult(JsonSerializer.SerializeToElement(new { ok = true }))
                : throw new TransientException("401: the upstream does not accept this key");
        }
    }

    /// <summary>Asks for the canary token, then says it is done; keeps every message it is sent, serialized.</summary>
    private sealed class CanaryAskingChatClient : TestChatClient
    {
        public const string Key = "canary-asker";

        public static ConcurrentQueue<string> Sent { get; } = new();

        public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var history = messages.ToList();
            foreach (var message in history)
            {
                Sent.Enqueue(JsonSerializer.Serialize(message));
            }

            var reply = history.Any(m => m.Role == ChatRole.Tool)
                ? new ChatMessage(ChatRole.Assistant, "I could not read the token.")
                : new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("call_canary", CanaryTool.Name, new Dictionary<string, object?>())]);
            return Task.FromResult(new ChatResponse(reply) { Usage = new UsageDetails { InputTokenCount = 10, OutputTokenCount = 5 } });
        }
    }

    /// <summary>Keeps every log line the silo writes, with its exception.</summary>
    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        public ConcurrentQueue<string> Lines { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

        public void Dispose()
        {
        }

        private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                owner.Lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception}");
        }
    }
}
