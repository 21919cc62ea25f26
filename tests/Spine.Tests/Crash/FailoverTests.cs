using Spine.Silo.Demo;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Crash;

/// <summary>Three real silo processes; the one holding the most runs is SIGKILLed mid-load.</summary>
public sealed class FailoverTests : IAsyncLifetime
{
    private const int Runs = 300;
    private const int Steps = 8;
    private SiloProcessCluster _cluster = null!;

    public async Task InitializeAsync() => _cluster = await SiloProcessCluster.StartAsync("failover", 3);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task SiloHoldingTheMostRunsKilled_EveryRunCompletesOnceAndTheOrphansSpreadOverBothSurvivors()
    {
        var client = _cluster.Client;
        var postgres = _cluster.Postgres;
        var batch = Guid.NewGuid().ToString("N");
        var ids = (await Task.WhenAll(Enumerable.Range(0, Runs).Select(i =>
            client.StartAsync("ledger", new LedgerInput(Steps, StepMilliseconds: 600), idempotencyKey: $"{batch}-{i}")))).Select(r => r.RunId).ToArray();
        await Eventually.GetAsync(
            () => postgres.ScalarAsync<long>("SELECT count(DISTINCT run_id) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)),
            n => n == Runs, TimeSpan.FromSeconds(60), "every run's first step");

        var before = await _cluster.LocateRunsAsync(ids);
        var (victimPort, held) = before.GroupBy(p => p.Value, p => p.Key).Select(g => (g.Key, g.ToList())).MaxBy(g => g.Item2.Count);
        await _cluster.KillAsync(victimPort);

        // The orphans: the victim's runs that had not finished when it died.
        var unfinished = await postgres.ScalarAsync<string[]>(
            "SELECT coalesce(array_agg(run_id), '{}') FROM spine_runs WHERE run_id = ANY(@ids) AND status NOT IN (3, 4, 5, 8)", ("ids", held.ToArray()));
        var orphans = unfinished.ToList();
        Assert.True(orphans.Count >= 20, $"only {orphans.Count} of the victim's {held.Count} runs were unfinished at the kill");

        // Watched through the index only: a client call would activate a run where its gateway chose, and the
        // point is where the recovery sweep puts them.
        await Eventually.GetAsync(
            () => postgres.ScalarAsync<long>("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status IN (3, 4, 5, 8)", ("ids", ids)),
            n => n == Runs, TimeSpan.FromSeconds(180), "every run to finish");
        var after = await _cluster.LocateRunsAsync(orphans);

        Assert.Equal((long)Runs, await postgres.ScalarAsync<long>("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status = 3", ("ids", ids)));
        Assert.Equal((long)Runs * Steps, await postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)));
        Assert.Equal((long)Runs * Steps, await postgres.ScalarAsync<long>("SELECT count(DISTINCT (run_id, step)) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)));
        var spread = after.Values.GroupBy(p => p).ToDictionary(g => g.Key, g => g.Count());
        Assert.DoesNotContain(victimPort, spread.Keys);
        Assert.True(spread.Count == 2 && spread.Values.Min() >= orphans.Count / 5,
            $"{orphans.Count} orphaned runs resumed as {string.Join(", ", spread.Select(s => $"{s.Value} on :{s.Key}"))}");
    }
}
