using System.Diagnostics;
using Spine.Silo.Demo;

namespace Spine.Bench;

/// <summary>
/// PostgreSQL crash-restarted twice (<c>pg_ctl restart -m immediate</c>) under one silo process while 200
/// runs are mid-step, with the shipped sweep period: runs must ride the outages out in place.
/// </summary>
public static class PgRestartWorkload
{
    /// <summary>Runs the workload and prints its figures as name=value lines on stdout.</summary>
    public static async Task<int> RunAsync(int runs)
    {
        var clock = Stopwatch.StartNew();
        void Say(string text) => Console.Error.WriteLine($"[pg-restart {clock.Elapsed.TotalSeconds,6:F1}s] {text}");
        await using var cluster = await ProcessCluster.StartAsync("pg-restart", silos: 1, TimeSpan.FromMinutes(1));
        var silo = cluster.Silos[0];

        var batch = Guid.NewGuid().ToString("N")[..8];
        var ids = (await Task.WhenAll(Enumerable.Range(0, runs).Select(i =>
            cluster.Client.StartAsync("ledger", new LedgerInput(10, StepMilliseconds: 300), idempotencyKey: $"{batch}-{i}")))).Select(r => r.RunId).ToArray();
        while (await cluster.CountAsync("SELECT count(DISTINCT run_id) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids) < runs)
        {
            await Task.Delay(200);
        }

        Say("every run is mid-step: crash-restarting PostgreSQL");
        await cluster.Server.CrashRestartAsync();
        await Task.Delay(TimeSpan.FromSeconds(1));
        await cluster.Server.CrashRestartAsync();
        var back = Stopwatch.StartNew();
        Say("PostgreSQL back after the second crash-restart");

        // The benchmark's own pooled connections died with the server too.
        cluster.Data.Clear();
        while (back.Elapsed < TimeSpan.FromMinutes(5) && await cluster.CountAsync("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status IN (3, 4, 5, 8)", ids) < runs)
        {
            await Task.Delay(200);
        }

        var finishedAfter = back.Elapsed.TotalSeconds;
        var completed = await cluster.CountAsync("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status = 3", ids);
        var finished = await cluster.CountAsync("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status IN (3, 4, 5, 8)", ids);
        var effects = await cluster.CountAsync("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids);
        var distinct = await cluster.CountAsync("SELECT count(DISTINCT (run_id, step)) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids);
        var siloUp = silo.IsRunning;

        ProcessCluster.Print("runs", runs);
        ProcessCluster.Print("runs_completed", completed);
        ProcessCluster.Print("runs_failed", finished - completed);
        ProcessCluster.Print("runs_lost", runs - finished);
        ProcessCluster.Print("duplicate_effects", effects - distinct);
        ProcessCluster.Print("silo_stayed_up", siloUp);
        ProcessCluster.Print("all_finished_s_after_restart", Math.Round(finishedAfter, 1));
        return completed == runs && effects == distinct && siloUp ? 0 : 1;
    }
}
