using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Spine.Client;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Local.Silos;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Crash;

/// <summary>Three real silo processes; the one holding the most runs is SIGKILLed mid-load.</summary>
public sealed class FailoverTests : IAsyncLifetime
{
    private const int Runs = 300;
    private const int Steps = 8;
    private readonly List<SiloProcess> _silos = [];
    private readonly string _logFile = Path.Combine(Path.GetTempPath(), $"spine-failover-{Guid.NewGuid():N}.log");
    private IHost? _clientHost;
    private TestPostgres _postgres = null!;

    public async Task InitializeAsync()
    {
        _postgres = await TestPostgres.GetAsync();
        var cluster = "failover-" + Guid.NewGuid().ToString("N")[..12];
        for (var i = 0; i < 3; i++)
        {
            _silos.Add(SiloProcess.Start(TestProcesses.Silo(_postgres.RuntimeConnectionString, cluster, logFile: _logFile)));
        }

        await Task.WhenAll(_silos.Select(s => s.WaitReadyAsync(TimeSpan.FromSeconds(90))));
        _clientHost = await TestProcesses.StartClientAsync(_postgres.RuntimeConnectionString, cluster);
    }

    public async Task DisposeAsync()
    {
        await TestProcesses.StopClientAsync(_clientHost);

        foreach (var silo in _silos)
        {
            await silo.StopAsync(TimeSpan.FromSeconds(20));
            await silo.DisposeAsync();
        }
    }

    [Fact]
    public async Task SiloHoldingTheMostRunsKilled_EveryRunCompletesOnceAndTheOrphansSpreadOverBothSurvivors()
    {
        var client = _clientHost!.Services.GetRequiredService<ISpineClient>();
        var grains = _clientHost.Services.GetRequiredService<IClusterClient>();
        var batch = Guid.NewGuid().ToString("N");
        var ids = (await Task.WhenAll(Enumerable.Range(0, Runs).Select(i =>
            client.StartAsync("ledger", new LedgerInput(Steps, StepMilliseconds: 600), idempotencyKey: $"{batch}-{i}")))).Select(r => r.RunId).ToArray();
        await Eventually.GetAsync(
            () => _postgres.ScalarAsync<long>("SELECT count(DISTINCT run_id) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)),
            n => n == Runs, TimeSpan.FromSeconds(60), "every run's first step");

        var before = await LocateAsync(grains, ids);
        var (victimPort, held) = before.GroupBy(p => p.Value, p => p.Key).Select(g => (g.Key, g.ToList())).MaxBy(g => g.Item2.Count);
        var victim = _silos.Single(s => s.Options.SiloPort == victimPort);
        await victim.KillAsync();
        await victim.DisposeAsync();
        _silos.Remove(victim);

        // The orphans: the victim's runs that had not finished when it died.
        var unfinished = await _postgres.ScalarAsync<string[]>(
            "SELECT coalesce(array_agg(run_id), '{}') FROM spine_runs WHERE run_id = ANY(@ids) AND status NOT IN (3, 4, 5, 8)", ("ids", held.ToArray()));
        var orphans = unfinished.ToList();
        Assert.True(orphans.Count >= 20, $"only {orphans.Count} of the victim's {held.Count} runs were unfinished at the kill");

        // Watched through the index only: a client call would activate a run where its gateway chose, and the
        // point is where the recovery sweep puts them.
        await Eventually.GetAsync(
            () => _postgres.ScalarAsync<long>("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status IN (3, 4, 5, 8)", ("ids", ids)),
            n => n == Runs, TimeSpan.FromSeconds(180), "every run to finish");
        var after = await LocateAsync(grains, orphans.ToArray());

        Assert.Equal((long)Runs, await _postgres.ScalarAsync<long>("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status = 3", ("ids", ids)));
        Assert.Equal((long)Runs * Steps, await _postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)));
        Assert.Equal((long)Runs * Steps, await _postgres.ScalarAsync<long>("SELECT count(DISTINCT (run_id, step)) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)));
        var spread = after.Values.GroupBy(p => p).ToDictionary(g => g.Key, g => g.Count());
        Assert.DoesNotContain(victimPort, spread.Keys);
        Assert.True(spread.Count == 2 && spread.Values.Min() >= orphans.Count / 5,
            $"{orphans.Count} orphaned runs resumed as {string.Join(", ", spread.Select(s => $"{s.Value} on :{s.Key}"))}");
    }

    /// <summary>The silo port of each run's activation (runs not active are left out).</summary>
    private static async Task<Dictionary<string, int>> LocateAsync(IClusterClient grains, string[] ids)
    {
        var management = grains.GetGrain<IManagementGrain>(0);
        var located = await Task.WhenAll(ids.Select(async id =>
        {
            // Right after a silo died, a lookup may be routed to it once; ask again.
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    return (id, Silo: await management.GetActivationAddress(grains.GetGrain<IWorkflowRunGrain>(id)));
                }
                catch (OrleansMessageRejectionException) when (attempt < 5)
                {
                    await Task.Delay(500);
                }
            }
        }));
        return located.Where(l => l.Silo is not null).ToDictionary(l => l.id, l => l.Silo!.Endpoint.Port);
    }
}
