using System.Diagnostics;
using Spine.Runs;
using Spine.Silo.Demo;

namespace Spine.Bench;

/// <summary>
/// Failover: three silo processes on one PostgreSQL with Spine's shipped defaults (the sweep period is
/// not shortened), 300 runs of a 10-step ledger workflow, and a SIGKILL of one silo mid-load. Reports
/// how long the orphaned runs took to run their next step after the kill.
/// </summary>
public static class FailoverWorkload
{
    /// <summary>Runs the workload and prints its figures as name=value lines on stdout.</summary>
    public static async Task<int> RunAsync(int runs)
    {
        var clock = Stopwatch.StartNew();
        void Say(string text) => Console.Error.WriteLine($"[failover {clock.Elapsed.TotalSeconds,6:F1}s] {text}");
        await using var cluster = await ProcessCluster.StartAsync("failover", silos: 3, TimeSpan.FromMinutes(1));
        Say("three silos ready");
        var silos = cluster.Silos;
        var client = cluster.Client;
        var grains = cluster.Grains;

        var batch = Guid.NewGuid().ToString("N")[..8];
        var ids = (await Task.WhenAll(Enumerable.Range(0, runs).Select(i =>
            client.StartAsync("ledger", new LedgerInput(10, StepMilliseconds: 500), idempotencyKey: $"{batch}-{i}")))).Select(r => r.RunId).ToArray();
        while (await cluster.CountAsync("SELECT count(DISTINCT run_id) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids) < runs)
        {
            await Task.Delay(200);
        }

        // Kill the silo holding the most runs.
        var management = grains.GetGrain<IManagementGrain>(0);
        var where = await Task.WhenAll(ids.Select(async id => (id, silo: await management.GetActivationAddress(grains.GetGrain<IWorkflowRunGrain>(id)))));
        var victimPort = where.Where(w => w.silo is not null).GroupBy(w => w.silo!.Endpoint.Port).MaxBy(g => g.Count())!.Key;
        var held = where.Where(w => w.silo?.Endpoint.Port == victimPort).Select(w => w.id).ToArray();
        var victim = silos.Single(s => s.Options.SiloPort == victimPort);
        var killedAt = DateTime.UtcNow;
        await victim.KillAsync();
        await victim.DisposeAsync();
        silos.Remove(victim);
        var orphans = await cluster.ScalarAsync<string[]>("SELECT coalesce(array_agg(run_id), '{}') FROM spine_runs WHERE run_id = ANY(@ids) AND status NOT IN (3, 4, 5, 8)", held);
        Say($"SIGKILLed the silo on port {victimPort}: {orphans.Length} of its {held.Length} runs unfinished");

        // Watched through PostgreSQL only: no client call activates a run.
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(5);
        while (DateTime.UtcNow < deadline && await cluster.CountAsync("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status IN (3, 4, 5, 8)", ids) < runs)
        {
            await Task.Delay(500);
        }

        await using var resumed = cluster.Data.CreateCommand("""
            SELECT extract(epoch FROM min(applied_at) - @killed) FROM spine_demo_ledger
            WHERE run_id = ANY(@ids) AND applied_at > @killed GROUP BY run_id
            """);
        resumed.Parameters.AddWithValue("ids", orphans);
        resumed.Parameters.AddWithValue("killed", killedAt);
        var delays = new List<double>();
        await using (var reader = await resumed.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                delays.Add((double)reader.GetDecimal(0));
            }
        }

        delays.Sort();
        var completed = await cluster.CountAsync("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status = 3", ids);
        var effects = await cluster.CountAsync("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids);
        var distinct = await cluster.CountAsync("SELECT count(DISTINCT (run_id, step)) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids);

        ProcessCluster.Print("runs", runs);
        ProcessCluster.Print("runs_completed", completed);
        ProcessCluster.Print("runs_lost", runs - completed);
        ProcessCluster.Print("duplicate_effects", effects - distinct);
        ProcessCluster.Print("orphaned_runs", orphans.Length);
        ProcessCluster.Print("resume_p50_s", Percentile(delays, 0.50));
        ProcessCluster.Print("resume_p99_s", Percentile(delays, 0.99));
        ProcessCluster.Print("seconds", Math.Round(clock.Elapsed.TotalSeconds, 1));
        return completed == runs && effects == distinct ? 0 : 1;
    }

    private static double Percentile(List<double> sorted, double q) =>
        sorted.Count == 0 ? double.NaN : Math.Round(sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)], 2);
}
