using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Spine.Client;
using Spine.Hosting;
using Spine.Local.Network;
using Spine.Runs;
using Spine.Tests.Infrastructure;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Tests.Tools;

/// <summary>
/// Deploys of tool versions against one database: a silo that lacks a version an in-flight run pinned refuses to
/// start (and starts when told to, the run failing at its next call of it), a version's contract cannot change under
/// it, and a breaking change is caught against a version an earlier deploy registered.
/// </summary>
public sealed class ToolCatalogTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task ASiloLackingAVersionAnInFlightRunPinned_RefusesToStartNamingIt_UnlessToldToStart()
    {
        var postgres = await TestPostgres.CreateDatabaseAsync("spine_catalog");
        string waiting, drained;
        await using (var first = await StartAsync(postgres, [Catalogued("1.0.0", Strings)]))
        {
            waiting = (await first.Client.StartAsync(PinWorkflow.Name, 0)).RunId;
            await first.Client.WaitForStatusAsync(waiting, RunStatus.AwaitingSignal, Patience);
        }

        // The next deploy drops 1.0.0: refused, naming the version and the run.
        var refused = await StartFailureAsync(postgres, [Catalogued("2.0.0", Strings)]);
        Assert.Contains($"'{CataloguedTool.Name}' 1.0.0 by 1 run(s) ({waiting})", refused, StringComparison.Ordinal);
        Assert.Contains("Spine:Tools:MissingPinnedVersions", refused, StringComparison.Ordinal);

        // Keeping 1.0.0 beside 2.0.0 drains it: the run finishes on the version it pinned, a new run takes 2.0.0.
        await using (var both = await StartAsync(postgres, [Catalogued("1.0.0", Strings), Catalogued("2.0.0", Strings)]))
        {
            var view = Assert.Single(await both.Client.GetToolsAsync(CataloguedTool.Name));
            Assert.Equal("2.0.0", view.Newest);
            Assert.Equal(["1.0.0", "2.0.0"], view.Versions.Select(v => v.Version));
            Assert.Equal((1, waiting), (view.Versions[0].PinnedBy, Assert.Single(view.Versions[0].PinningRuns)));
            Assert.Equal(0, view.Versions[1].PinnedBy);
            Assert.All(view.Versions, v => Assert.True(v.Registered && v.FirstRegisteredAt is not null));

            await both.Client.SignalAsync(waiting, PinWorkflow.Signal, "go");
            var done = await both.Client.WaitAsync(waiting, Patience);
            Assert.Equal(RunStatus.Completed, done.Status);
            Assert.Equal("\"1.0.0 1.0.0\"", done.ResultJson);

            drained = (await both.Client.StartAsync(PinWorkflow.Name, 1)).RunId;
            await both.Client.WaitForStatusAsync(drained, RunStatus.AwaitingSignal, Patience);
        }

        // Told to start anyway without 2.0.0, which the second run pinned: it starts; the run fails at its next call.
        await using (var told = await StartAsync(postgres, [Catalogued("1.0.0", Strings)], new() { ["Spine:Tools:MissingPinnedVersions"] = "Start" }))
        {
            await told.Client.SignalAsync(drained, PinWorkflow.Signal, "go");
            var failed = await told.Client.WaitAsync(drained, Patience);
            Assert.Equal(RunStatus.Failed, failed.Status);
            Assert.Equal("unknown_tool", failed.Error!.Kind);
        }
    }

    [Fact]
    public async Task AVersionsContract_CannotChangeUnderIt_AndABreakingChangeIsCaughtAgainstAnEarlierDeploy()
    {
        var postgres = await TestPostgres.CreateDatabaseAsync("spine_catalog");
        await using (var first = await StartAsync(postgres, [Catalogued("1.0.0", Strings)]))
        {
            Assert.Equal(1L, await postgres.ScalarAsync<long>("SELECT count(*) FROM spine_tool_contracts WHERE name = @n", ("n", CataloguedTool.Name)));
        }

        // The same version with another (even a compatible) schema.
        var changed = await StartFailureAsync(postgres, [Catalogued("1.0.0", """{"type":"object","properties":{"q":{"type":"string"},"n":{"type":"integer"}}}""")]);
        Assert.Contains($"Tool '{CataloguedTool.Name}' 1.0.0 was registered on", changed, StringComparison.Ordinal);
        Assert.Contains("with another contract", changed, StringComparison.Ordinal);

        // 1.0.0 is gone from this deploy, but 1.1.0 still breaks it.
        var breaking = await StartFailureAsync(postgres, [Catalogued("1.1.0", """{"type":"object","properties":{"q":{"type":"integer"}}}""")]);
        Assert.Contains($"Tool '{CataloguedTool.Name}' 1.1.0 breaks the contract of 1.0.0", breaking, StringComparison.Ordinal);
        Assert.Contains("1.0.0 was registered before", breaking, StringComparison.Ordinal);

        // A compatible 1.1.0 is recorded beside it.
        await using (await StartAsync(postgres, [Catalogued("1.0.0", Strings), Catalogued("1.1.0", """{"type":"object","properties":{"q":{"type":["string","integer"]}}}""")]))
        {
            Assert.Equal(2L, await postgres.ScalarAsync<long>("SELECT count(*) FROM spine_tool_contracts WHERE name = @n", ("n", CataloguedTool.Name)));
        }
    }

    private const string Strings = """{"type":"object","properties":{"q":{"type":"string"}}}""";

    private static CataloguedTool Catalogued(string version, string input) => new(version, input);

    private static async Task<Silo> StartAsync(TestPostgres postgres, IEnumerable<ITool> tools, Dictionary<string, string?>? settings = null)
    {
        var host = Build(postgres, tools, settings);
        await host.StartAsync();
        return new Silo(host);
    }

    private static async Task<string> StartFailureAsync(TestPostgres postgres, IEnumerable<ITool> tools)
    {
        using var host = Build(postgres, tools, null);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => host.StartAsync());
        return error.ToString();
    }

    private static IHost Build(TestPostgres postgres, IEnumerable<ITool> tools, Dictionary<string, string?>? settings)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>(settings ?? []) { ["Spine:Audit:Key"] = TestAudit.Key });
        builder.Logging.ClearProviders();
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering(LoopbackPorts.FreePort(), LoopbackPorts.FreePort());
            silo.AddSpine(postgres.RuntimeConnectionString, builder.Configuration.GetSection(SpineOptions.SectionName));
        });
        foreach (var tool in tools)
        {
            builder.Services.AddSingleton(tool);
        }

        builder.Services.AddSpineWorkflow<PinWorkflow, int, string>();
        return builder.Build();
    }

    private sealed class Silo(IHost host) : IAsyncDisposable
    {
        public ISpineClient Client { get; } = new SpineClient(host.Services.GetRequiredService<IGrainFactory>());

        public async ValueTask DisposeAsync()
        {
            await host.StopAsync();
            host.Dispose();
        }
    }
}

/// <summary><c>test_catalogued</c> at a version and input schema; answers with its version.</summary>
public sealed class CataloguedTool(string version, string input) : ITool
{
    public const string Name = "test_catalogued";

    public ToolDefinition Definition { get; } = new()
    {
        Name = Name, Version = version, Description = "Answers with its version.", InputSchema = input,
        OutputSchema = """{"type":"object"}""", Effect = ToolEffect.ReadOnly,
    };

    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context) =>
        Task.FromResult(JsonSerializer.SerializeToElement(new { version }));
}

/// <summary>Calls <c>test_catalogued</c>, waits for a signal, calls it again; answers with the two versions.</summary>
[Workflow(Name)]
public sealed class PinWorkflow : IWorkflow<int, string>
{
    public const string Name = "test.pin-wait";
    public const string Signal = "go";

    public async Task<string> RunAsync(IWorkflowContext context, int input)
    {
        var arguments = JsonSerializer.SerializeToElement(new { q = "a" });
        var first = await context.CallToolAsync(CataloguedTool.Name, arguments);
        await context.WaitForSignalAsync<string>(Signal, Timeout.InfiniteTimeSpan);
        var second = await context.CallToolAsync(CataloguedTool.Name, arguments);
        return $"{first.GetProperty("version").GetString()} {second.GetProperty("version").GetString()}";
    }
}
