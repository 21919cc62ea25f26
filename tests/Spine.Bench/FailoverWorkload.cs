using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Spine.Client;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Silo.Hosting;
using Spine.Silo.LocalPostgres;
using Spine.Storage;

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
        await using var server = await LocalPostgresServer.StartAsync(new LocalPostgresOptions
        {
            DataDirectory = Path.Combine(Path.GetTempPath(), "spine-failover-" + Guid.NewGuid().ToString("N")[..8]),
            DeleteOnStop = true,
            ServerSettings = new Dictionary<string, string> { ["max_connections"] = "300" },
        });
        await SchemaMigrator.ApplyAsync(server.ConnectionString, SpineSiloHost.RuntimeLogin, includeDemo: true);
        var runtime = new NpgsqlConnectionStringBuilder(server.ConnectionString) { Username = SpineSiloHost.RuntimeLogin }.ConnectionString;
        var cluster = "failover-" + Guid.NewGuid().ToString("N")[..8];
        var silos = Enumerable.Range(0, 3).Select(_ => SiloProcess.Start(new SiloProcessOptions
        {
            Demo = true,
            ConnectionString = runtime,
            ClusterId = cluster,
            ServiceId = cluster,
            SiloPort = SiloProcessOptions.FreePort(),
            GatewayPort = SiloProcessOptions.FreePort(),
            DashboardPort = SiloProcessOptions.FreePort(),
            ResumeReminderPeriod = TimeSpan.FromMinutes(1),
            Environment = new Dictionary<string, string> { ["Silo__Dashboard"] = "false" },
        })).ToList();
        await Task.WhenAll(silos.Select(s => s.WaitReadyAsync(TimeSpan.FromSeconds(90))));
        Say("three silos ready");

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSpineClient(o =>
        {
            o.ConnectionString = runtime;
            o.ClusterId = cluster;
            o.ServiceId = cluster;
        });
        using var host = builder.Build();
        await host.StartAsync();
        var client = host.Services.GetRequiredService<ISpineClient>();
        var grains = host.Services.GetRequiredService<IClusterClient>();
        await using var data = NpgsqlDataSource.Create(server.ConnectionString);

        var batch = Guid.NewGuid().ToString("N")[..8];
        var ids = (await Task.WhenAll(Enumerable.Range(0, runs).Select(i =>
            client.StartAsync("ledger", new LedgerInput(10, StepMilliseconds: 500), idempotencyKey: $"{batch}-{i}")))).Select(r => r.RunId).ToArray();
        while (await ScalarAsync<long>(data, "SELECT count(DISTINCT run_id) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids) < runs)
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
        var orphans = await ScalarAsync<string[]>(data, "SELECT coalesce(array_agg(run_id), '{}') FROM spine_runs WHERE run_id = ANY(@ids) AND status NOT IN (3, 4, 5, 8)", held);
        Say($"SIGKILLed the silo on port {victimPort}: {orphans.Length} of its {held.Length} runs unfinished");

        // Watched through PostgreSQL only: no client call activates a run.
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(5);
        while (DateTime.UtcNow < deadline && await ScalarAsync<long>(data, "SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status IN (3, 4, 5, 8)", ids) < runs)
        {
            await Task.Delay(500);
        }

        await using var resumed = data.CreateCommand("""
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
        var completed = await ScalarAsync<long>(data, "SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status = 3", ids);
        var effects = await ScalarAsync<long>(data, "SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids);
        var distinct = await ScalarAsync<long>(data, "SELECT count(DISTINCT (run_id, step)) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids);
        await host.StopAsync();
        foreach (var silo in silos)
        {
            await silo.StopAsync(TimeSpan.FromSeconds(20));
            await silo.DisposeAsync();
        }

        Print("runs", runs);
        Print("runs_completed", completed);
        Print("runs_lost", runs - completed);
        Print("duplicate_effects", effects - distinct);
        Print("orphaned_runs", orphans.Length);
        Print("resume_p50_s", Percentile(delays, 0.50));
        Print("resume_p99_s", Percentile(delays, 0.99));
        Print("seconds", Math.Round(clock.Elapsed.TotalSeconds, 1));
        return completed == runs && effects == distinct ? 0 : 1;
    }

    private static double Percentile(List<double> sorted, double q) =>
        sorted.Count == 0 ? double.NaN : Math.Round(sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)], 2);

    private static async Task<T> ScalarAsync<T>(NpgsqlDataSource data, string sql, string[] ids)
    {
        await using var command = data.CreateCommand(sql);
        command.Parameters.AddWithValue("ids", ids);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    private static void Print(string name, object value) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name}={value}"));
}
