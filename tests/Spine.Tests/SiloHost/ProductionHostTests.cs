using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Spine.Agents;
using Spine.Client;
using Spine.Errors;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Local.Silos;
using Spine.Storage;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.SiloHost;

/// <summary>The shipped silo host without <c>Silo:Demo</c>: no demo workflow, tool or table is part of it.</summary>
public sealed class ProductionHostTests : IAsyncLifetime
{
    private SiloProcess _silo = null!;
    private IHost? _clientHost;

    public async Task InitializeAsync()
    {
        var postgres = await TestPostgres.GetAsync();
        var cluster = "prod-" + Guid.NewGuid().ToString("N")[..12];
        _silo = SiloProcess.Start(TestProcesses.Silo(postgres.RuntimeConnectionString, cluster, demo: false));
        await _silo.WaitReadyAsync(TimeSpan.FromSeconds(90));
        _clientHost = await TestProcesses.StartClientAsync(postgres.RuntimeConnectionString, cluster);
    }

    public async Task DisposeAsync()
    {
        await TestProcesses.StopClientAsync(_clientHost);

        await _silo.StopAsync(TimeSpan.FromSeconds(20));
        await _silo.DisposeAsync();
    }

    [Fact]
    public async Task ProductionSilo_HasNoDemoWorkflowsOrTools()
    {
        var client = _clientHost!.Services.GetRequiredService<ISpineClient>();

        await Assert.ThrowsAsync<UnknownWorkflowException>(() => client.StartAsync("ledger", new LedgerInput(1)));

        // The built-in agent loop is there, but the demo's ledger_apply is not a tool of this silo.
        var run = await client.StartAsync("agent", new AgentInput("hello", Tools: ["ledger_apply"]));
        var done = await client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));
        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("unknown_tool", done.Error!.Kind);
    }

    [Fact]
    public void ProductSchema_HoldsNoDemoTables()
    {
        Assert.DoesNotContain(SchemaMigrator.Scripts(), s => s.Sql.Contains("spine_demo", StringComparison.Ordinal));
        Assert.Contains(SchemaMigrator.Scripts(includeDemo: true), s => s.Sql.Contains("spine_demo_ledger", StringComparison.Ordinal));
    }
}
