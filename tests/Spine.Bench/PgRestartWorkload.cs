using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Spine.Client;
using Spine.Silo.Demo;
using Spine.Silo.Hosting;
using Spine.Silo.LocalPostgres;
using Spine.Storage;

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
        await using var server = await LocalPostgresServer.StartAsync(new LocalPostgresOptions
        {
            DataDirectory = Path.Combine(Path.GetTempPath(), "spine-pg-restart-" + Guid.NewGuid().ToString("N")[..8]),
            DeleteOnStop = true,
        });
        await SchemaMigrator.ApplyAsync(server.ConnectionString, SpineSiloHost.RuntimeLogin, includeDemo: true);
        var runtime = new NpgsqlConnectionStringBuilder(server.ConnectionString) { Username = SpineSiloHost.RuntimeLogin }.ConnectionString;
        var cluster = "pg-restart-" + Guid.NewGuid().ToString("N")[..8];
        var silo = SiloProcess.Start(new SiloProcessOptions
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
        });
        await silo.WaitReadyAsync(TimeSpan.FromSeconds(90));
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
        await using var data = NpgsqlDataSource.Create(server.ConnectionString);

        var batch = Guid.NewGuid().ToString("N")[..8];
        var ids = (await Task.WhenAll(Enumerable.Range(0, runs).Select(i =>
            client.StartAsync("ledger", new LedgerInput(10, StepMilliseconds: 300), idempotencyKey: $"{batch}-{i}")))).Select(r => r.RunId).ToArray();
        while (await CountAsync(data, "SELECT count(DISTINCT run_id) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids) < runs)
        {
            await Task.Delay(200);
        }

        Say("every run is mid-step: crash-restarting PostgreSQL");
        await server.CrashRestartAsync();
        await Task.Delay(TimeSpan.FromSeconds(1));
        await server.CrashRestartAsync();
        var back = Stopwatch.StartNew();
        Say("PostgreSQL back after the second crash-restart");

        // The benchmark's own pooled connections died with the server too.
        data.Clear();

        var deadline = TimeSpan.FromMinutes(5);
        while (back.Elapsed < deadline && await CountAsync(data, "SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status IN (3, 4, 5, 8)", ids) < runs)
        {
            await Task.Delay(200);
        }

        var finishedAfter = back.Elapsed.TotalSeconds;
        var completed = await CountAsync(data, "SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status = 3", ids);
        var finished = await CountAsync(data, "SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status IN (3, 4, 5, 8)", ids);
        var effects = await CountAsync(data, "SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids);
        var distinct = await CountAsync(data, "SELECT count(DISTINCT (run_id, step)) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids);
        var siloUp = silo.IsRunning;
        await host.StopAsync();
        await silo.StopAsync(TimeSpan.FromSeconds(20));
        await silo.DisposeAsync();

        Print("runs", runs);
        Print("runs_completed", completed);
        Print("runs_failed", finished - completed);
        Print("runs_lost", runs - finished);
        Print("duplicate_effects", effects - distinct);
        Print("silo_stayed_up", siloUp);
        Print("all_finished_s_after_restart", Math.Round(finishedAfter, 1));
        return completed == runs && effects == distinct && siloUp ? 0 : 1;
    }

    private static async Task<long> CountAsync(NpgsqlDataSource data, string sql, string[] ids)
    {
        await using var command = data.CreateCommand(sql);
        command.Parameters.AddWithValue("ids", ids);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private static void Print(string name, object value) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name}={value}"));
}
