using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Spine.Client;
using Spine.Local.Silos;

namespace Spine.Tests.Infrastructure;

/// <summary>
/// Real silo processes of one cluster on the shared PostgreSQL, and a client host that finds them through the
/// membership table; a test kills some of them.
/// </summary>
public sealed class SiloProcessCluster : IAsyncDisposable
{
    private readonly List<SiloProcess> _silos;
    private readonly IHost _clientHost;

    private SiloProcessCluster(TestPostgres postgres, List<SiloProcess> silos, IHost clientHost)
    {
        Postgres = postgres;
        _silos = silos;
        _clientHost = clientHost;
    }

    public TestPostgres Postgres { get; }

    /// <summary>The silos still running.</summary>
    public IReadOnlyList<SiloProcess> Silos => _silos;

    public ISpineClient Client => _clientHost.Services.GetRequiredService<ISpineClient>();

    public IClusterClient Grains => _clientHost.Services.GetRequiredService<IClusterClient>();

    /// <summary>Starts <paramref name="silos"/> demo silos (their output in one log file named after <paramref name="name"/>) and the client.</summary>
    public static async Task<SiloProcessCluster> StartAsync(string name, int silos)
    {
        var postgres = await TestPostgres.GetAsync();
        var cluster = name + "-" + Guid.NewGuid().ToString("N")[..12];
        var logFile = Path.Combine(Path.GetTempPath(), $"spine-{cluster}.log");
        var started = Enumerable.Range(0, silos).Select(_ => SiloProcess.Start(TestProcesses.Silo(postgres.RuntimeConnectionString, cluster, logFile: logFile))).ToList();
        await Task.WhenAll(started.Select(s => s.WaitReadyAsync(TimeSpan.FromSeconds(90))));
        return new SiloProcessCluster(postgres, started, await TestProcesses.StartClientAsync(postgres.RuntimeConnectionString, cluster));
    }

    /// <summary>SIGKILLs the silo listening on <paramref name="siloPort"/>.</summary>
    public async Task KillAsync(int siloPort)
    {
        var victim = _silos.Single(s => s.Options.SiloPort == siloPort);
        await victim.KillAsync();
        await victim.DisposeAsync();
        _silos.Remove(victim);
    }

    /// <summary>The silo port of each grain's activation (grains not active are left out).</summary>
    public async Task<Dictionary<string, int>> LocateRunsAsync(IEnumerable<string> runIds)
    {
        var management = Grains.GetGrain<IManagementGrain>(0);
        var located = await Task.WhenAll(runIds.Select(async id =>
        {
            // Right after a silo died, a lookup may be routed to it once; ask again.
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    return (id, Silo: await management.GetActivationAddress(Grains.GetGrain<Spine.Runs.IWorkflowRunGrain>(id)));
                }
                catch (OrleansMessageRejectionException) when (attempt < 5)
                {
                    await Task.Delay(500);
                }
            }
        }));
        return located.Where(l => l.Silo is not null).ToDictionary(l => l.id, l => l.Silo!.Endpoint.Port);
    }

    public async ValueTask DisposeAsync()
    {
        await TestProcesses.StopClientAsync(_clientHost);
        foreach (var silo in _silos)
        {
            await silo.StopAsync(TimeSpan.FromSeconds(20));
            await silo.DisposeAsync();
        }
    }
}
