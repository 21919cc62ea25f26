using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Spine.Breakers;
using Spine.Hosting;
using Spine.Local.Network;
using Spine.Local.Silos;
using Spine.Tests.Infrastructure;
using Spine.Tools;

namespace Spine.Tests.SiloHost;

/// <summary>Settings and tool policies out of range stop a silo at start-up with a message naming them.</summary>
public sealed class StartupValidationTests
{
    [Fact]
    public async Task AddSpine_SettingsOutOfRange_HostFailsToStartNamingEachSetting()
    {
        var error = await StartFailureAsync(new Dictionary<string, string?>
        {
            ["Spine:Breaker:FailureRateThreshold"] = "1.5",
            ["Spine:Retry:Tool:MaxAttempts"] = "0",
            ["Spine:JournalWriters"] = "0",
        });

        Assert.Contains("Spine:Breaker:FailureRateThreshold is 1.5", error, StringComparison.Ordinal);
        Assert.Contains("Spine:Retry:Tool:MaxAttempts is 0", error, StringComparison.Ordinal);
        Assert.Contains("Spine:JournalWriters is 0", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddSpine_ReliabilityTargetOutOfRange_HostFailsToStartNamingTheSetting()
    {
        var error = await StartFailureAsync(new Dictionary<string, string?> { ["Spine:Slo:Targets:refund"] = "1.5" });

        Assert.Contains("Spine:Slo:Targets:refund is 1.5", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddSpine_AlertSettingsOutOfRange_HostFailsToStartNamingEachSetting()
    {
        var error = await StartFailureAsync(new Dictionary<string, string?>
        {
            ["Spine:Alerts:WebhookUrl"] = "http://127.0.0.1:9/alerts",
            ["Spine:Alerts:FailureRateFactor"] = "0.5",
            ["Spine:Alerts:MinRuns"] = "0",
        });

        Assert.Contains("Spine:Alerts:WebhookSecret is empty", error, StringComparison.Ordinal);
        Assert.Contains("Spine:Alerts:FailureRateFactor is 0.5", error, StringComparison.Ordinal);
        Assert.Contains("Spine:Alerts:MinRuns is 0", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddSpine_NoJournalKey_HostFailsToStartNamingTheSetting()
    {
        var missing = await StartFailureAsync(new Dictionary<string, string?> { ["Spine:Audit:Key"] = null });
        var unreadable = await StartFailureAsync(new Dictionary<string, string?>
        {
            ["Spine:Audit:Key"] = null,
            ["Spine:Audit:KeyFile"] = Path.Combine(Path.GetTempPath(), "no-such-dir-" + Guid.NewGuid().ToString("N"), "key"),
        });

        Assert.Contains("Spine:Audit:Key (or Spine:Audit:KeyFile) is not set", missing, StringComparison.Ordinal);
        Assert.Contains("Spine:Audit:KeyFile '", unreadable, StringComparison.Ordinal);
        Assert.Contains("cannot be read", unreadable, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddSpine_ToolWithBreakerPolicyOutOfRange_HostFailsToStartNamingTheToolAndSetting()
    {
        var tool = new PolicyTool(new BreakerPolicy { MinimumCalls = 0 });

        var error = await StartFailureAsync([], services => services.AddSingleton<ITool>(tool));

        Assert.Contains("Tool 'test_bad_policy' 1.0.0 Breaker:MinimumCalls is 0", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddSpine_ToolSecretMissingTooShortOrMisnamed_HostFailsToStartNamingTheToolSecretAndWhereItIsLookedFor()
    {
        var directory = Directory.CreateTempSubdirectory("spine-secrets-").FullName;
        await File.WriteAllTextAsync(Path.Combine(directory, "short_key"), "abc\n");
        try
        {
            var error = await StartFailureAsync(
                new Dictionary<string, string?> { ["Spine:Secrets:Directory"] = directory, ["Spine:Secrets:EnvironmentPrefix"] = "SPINE_TEST_SECRET_" },
                services => services.AddSingleton<ITool>(new SecretTool(["missing_key", "short_key"])));
            var misnamed = await StartFailureAsync([], services => services.AddSingleton<ITool>(new SecretTool(["../etc/passwd"])));

            Assert.Contains($"Tool 'test_secret_user' 1.0.0 needs the secret 'missing_key', which is not available: set the file {Path.Combine(directory, "missing_key")} or the environment variable SPINE_TEST_SECRET_MISSING_KEY.", error, StringComparison.Ordinal);
            Assert.Contains("the secret 'short_key' is shorter than 8 characters", error, StringComparison.Ordinal);
            Assert.Contains("Tool 'test_secret_user' 1.0.0 Secrets: the secret name '../etc/passwd' may hold only letters, digits", misnamed, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task AddSpine_MalformedPolicies_HostFailsToStartNamingEachSetting()
    {
        var file = Path.Combine(Path.GetTempPath(), $"spine-policy-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(file, "{ \"rules\": [ { \"workflow\": \"no.such.workflow\" } ] }");
        try
        {
            var error = await StartFailureAsync(new Dictionary<string, string?>
            {
                ["Spine:Policies:Rules:0:Workflow"] = "*",
                ["Spine:Policies:Rules:0:Tools:no_such_tool:MaxCalls"] = "1",
                ["Spine:Policies:Rules:0:Tools:test_bad_policy:Versions"] = "not a range",
                ["Spine:Policies:Rules:0:Tools:test_bad_policy:Arguments"] = "{\"maxLength\": \"twelve\"}",
                ["Spine:Policies:Rules:0:MaxToolCalls"] = "-1",
                ["Spine:Policies:Rules:1:Tools:test_bad_policy:MinConfidence"] = "1.5",
                ["Spine:Policies:Rules:1:Tools:test_bad_policy:RequireApproval:Timeout"] = "00:00:00",
                ["Spine:Policies:MaxDenials"] = "0",
                ["Spine:Policies:File"] = file,
            }, services => services.AddSingleton<ITool>(new PolicyTool(new BreakerPolicy())));

            Assert.Contains("Spine:Policies:Rules:0:Tools:no_such_tool names a tool this silo does not register", error, StringComparison.Ordinal);
            Assert.Contains("Spine:Policies:Rules:0:Tools:test_bad_policy:Versions 'not a range' is not a version range", error, StringComparison.Ordinal);
            Assert.Contains("Spine:Policies:Rules:0:Tools:test_bad_policy:Arguments is not a JSON Schema", error, StringComparison.Ordinal);
            Assert.Contains("Spine:Policies:Rules:0:MaxToolCalls is -1", error, StringComparison.Ordinal);
            Assert.Contains("Spine:Policies:MaxDenials is 0", error, StringComparison.Ordinal);
            Assert.Contains("Spine:Policies:Rules:1:Tools:test_bad_policy:MinConfidence is 1.5: it must be between 0 and 1", error, StringComparison.Ordinal);
            Assert.Contains("Spine:Policies:Rules:1:Tools:test_bad_policy:RequireApproval:ApproverRoles is empty", error, StringComparison.Ordinal);
            Assert.Contains("Spine:Policies:Rules:1:Tools:test_bad_policy:RequireApproval:Timeout is 00:00:00: it must be positive", error, StringComparison.Ordinal);
            Assert.Contains($"{file}: rules[0]:Workflow 'no.such.workflow' is not a registered workflow type", error, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task SiloProcess_BreakerThresholdOutOfRange_ExitsWithUsageErrorNamingTheSetting()
    {
        var postgres = await TestPostgres.GetAsync();
        var output = new ConcurrentQueue<string>();
        var options = TestProcesses.Silo(postgres.RuntimeConnectionString, "bad-" + Guid.NewGuid().ToString("N")[..12]) with
        {
            Environment = new Dictionary<string, string> { ["Spine__Breaker__FailureRateThreshold"] = "1.5" },
            OnOutput = output.Enqueue,
        };
        await using var silo = SiloProcess.Start(options);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => silo.WaitReadyAsync(TimeSpan.FromSeconds(90)));
        await silo.KillAsync();

        Assert.Contains("exited with code 2", error.Message, StringComparison.Ordinal);
        Assert.Contains(output, line => line.Contains("invalid configuration: Spine:Breaker:FailureRateThreshold is 1.5", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SiloProcess_AdminKeysMalformed_ExitsWithUsageErrorNamingEachKeySetting()
    {
        var postgres = await TestPostgres.GetAsync();
        var output = new ConcurrentQueue<string>();
        var options = TestProcesses.Silo(postgres.RuntimeConnectionString, "bad-" + Guid.NewGuid().ToString("N")[..12]) with
        {
            Environment = new Dictionary<string, string>
            {
                ["Silo__Admin__Keys__0__Id"] = "short",
                ["Silo__Admin__Keys__0__Key"] = "too-short",
                ["Silo__Admin__Keys__1__Id"] = "digest",
                ["Silo__Admin__Keys__1__Sha256"] = "abc",
                ["Silo__Admin__Keys__2__Roles__0"] = "viewer",
                ["Silo__Admin__Keys__2__Key"] = "a-long-enough-key-without-id",
            },
            OnOutput = output.Enqueue,
        };
        await using var silo = SiloProcess.Start(options);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => silo.WaitReadyAsync(TimeSpan.FromSeconds(90)));
        await silo.KillAsync();

        Assert.Contains("exited with code 2", error.Message, StringComparison.Ordinal);
        Assert.Contains(output, line => line.Contains("invalid configuration: Silo:Admin:Keys:0:Key is 9 characters: it must be at least 16", StringComparison.Ordinal));
        Assert.Contains(output, line => line.Contains("invalid configuration: Silo:Admin:Keys:1:Sha256 is not 64 hex digits", StringComparison.Ordinal));
        Assert.Contains(output, line => line.Contains("invalid configuration: Silo:Admin:Keys:2:Id is empty", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("bogus")]
    [InlineData("migrate --bogus")]
    [InlineData("migrate --connection")]
    [InlineData("demo extra")]
    public async Task SiloCommand_BadUsage_ExitsWithUsageErrorAndSaysWhy(string arguments)
    {
        using var process = Process.Start(new ProcessStartInfo("dotnet", [SiloExecutable.Locate(), .. arguments.Split(' ')])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment = { ["SPINE_MIGRATE_CONNECTION"] = null },
        })!;
        var error = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(2, process.ExitCode);
        Assert.Contains("spine-silo", await error, StringComparison.Ordinal);
    }

    private static async Task<string> StartFailureAsync(Dictionary<string, string?> settings, Action<IServiceCollection>? services = null)
    {
        var postgres = await TestPostgres.GetAsync();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
        settings.TryAdd("Spine:Audit:Key", TestAudit.Key);
        settings.TryAdd(TestSpine.SharedDatabaseSetting, TestSpine.SharedDatabaseValue);
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering(LoopbackPorts.FreePort(), LoopbackPorts.FreePort());
            silo.AddSpine(postgres.RuntimeConnectionString, builder.Configuration.GetSection(SpineOptions.SectionName));
        });
        services?.Invoke(builder.Services);
        using var host = builder.Build();

        // Disposing the host is the clean-up: it never started far enough to be stopped.
        var error = await Assert.ThrowsAnyAsync<Exception>(() => host.StartAsync());
        return error.ToString();
    }

    private sealed class PolicyTool(BreakerPolicy breaker) : ITool
    {
        public ToolDefinition Definition { get; } = new()
        {
            Name = "test_bad_policy",
            Version = "1.0.0",
            Description = "A tool whose breaker policy is out of range.",
            InputSchema = """{"type":"object"}""",
            OutputSchema = """{"type":"object"}""",
            Breaker = breaker,
        };

        public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context) => Task.FromResult(arguments);
    }

    private sealed class SecretTool(IReadOnlyList<string> secrets) : ITool
    {
        public ToolDefinition Definition { get; } = new()
        {
            Name = "test_secret_user",
            Version = "1.0.0",
            Description = "A tool that needs secrets.",
            InputSchema = """{"type":"object"}""",
            OutputSchema = """{"type":"object"}""",
            Secrets = secrets,
        };

        public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context) => Task.FromResult(arguments);
    }
}
