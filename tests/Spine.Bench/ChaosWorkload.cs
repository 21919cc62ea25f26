using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Spine.Client;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Local.Postgres;
using Spine.Local.Silos;

namespace Spine.Bench;

/// <summary>
/// The reliability figure: 500 runs of a 10-step workflow whose tool fails transiently 15% of the time
/// per call, while the silo process is killed with SIGKILL at random moments and restarted. Without
/// Spine, 0.85^10 of such runs (20%) would succeed.
/// </summary>
public static class ChaosWorkload
{
    /// <summary>Runs the workload and prints its figures as name=value lines on stdout.</summary>
    public static async Task<int> RunAsync(int runs, int minimumKills, int seed)
    {
        var clock = Stopwatch.StartNew();
        void Say(string text) => Console.Error.WriteLine($"[chaos {clock.Elapsed.TotalSeconds,6:F1}s] {text}");
        var random = new Random(seed);

        LocalPostgresServer? server = null;
        var owner = Environment.GetEnvironmentVariable("SPINE_BENCH_CONNECTION");
        if (string.IsNullOrWhiteSpace(owner))
        {
            server = await LocalPostgresServer.StartAsync(new LocalPostgresOptions
            {
                DataDirectory = Path.Combine(Path.GetTempPath(), "spine-chaos-" + Guid.NewGuid().ToString("N")[..8]),
                DeleteOnStop = true,
                StopWithThisProcess = true,
                ServerSettings = new Dictionary<string, string> { ["max_connections"] = "300" },
            });
            owner = server.ConnectionString;
        }

        await using var _ = server;
        var runtime = await SpineDatabaseSetup.ApplySchemaAsync(owner, includeDemo: true);
        var options = SiloProcessOptions.OnFreePorts(runtime, "chaos-" + Guid.NewGuid().ToString("N")[..8], BenchEnvironment.AuditKey) with
        {
            LogFile = Path.Combine(Path.GetTempPath(), $"spine-chaos-{seed}.log"),
        };

        var silo = SiloProcess.Start(options);
        await silo.WaitReadyAsync(TimeSpan.FromSeconds(90));
        using var host = await SiloClientHost.StartAsync(options, o => o.WaitSlice = TimeSpan.FromSeconds(5));
        var client = host.Services.GetRequiredService<ISpineClient>();

        // Runs are started over ~20 s so that kills land among runs at every stage; a start that meets a
        // dead silo is simply repeated with the same idempotency key.
        var batch = Guid.NewGuid().ToString("N")[..8];
        var runIds = Enumerable.Range(0, runs).Select(i => RunIds.FromIdempotencyKey("chaos", $"{batch}-{i}")).ToArray();
        var kills = 0;
        using var stop = new CancellationTokenSource();
        var starter = Parallel.ForEachAsync(Enumerable.Range(0, runs), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, _) =>
        {
            var input = new ChaosInput(Steps: 10, FailureRate: 0.15, Seed: seed, WorkMilliseconds: 100);
            while (true)
            {
                try
                {
                    await client.StartAsync("chaos", input, idempotencyKey: $"{batch}-{i}", accountId: "chaos");
                    break;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    await Task.Delay(200);
                }
            }

            await Task.Delay(300);
        });

        var killer = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(random.Next(2000, 5000)), CancellationToken.None);
                if (stop.IsCancellationRequested && kills >= minimumKills)
                {
                    break;
                }

                Say($"SIGKILL silo pid {silo.ProcessId} (kill #{kills + 1})");
                await silo.KillAsync();
                await silo.DisposeAsync();
                kills++;
                silo = SiloProcess.Start(options);
                await silo.WaitReadyAsync(TimeSpan.FromSeconds(90));
                Say($"silo restarted (pid {silo.ProcessId})");
                if (kills >= minimumKills && starter.IsCompleted)
                {
                    break;
                }
            }
        });

        await starter;
        Say($"all {runs} runs accepted");
        await killer;
        Say($"{kills} kills done; waiting for every run to finish");

        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(5);
        var finished = new Dictionary<string, RunInfo>();
        while (finished.Count < runs && DateTime.UtcNow < deadline)
        {
            foreach (var id in runIds.Where(id => !finished.ContainsKey(id)))
            {
                try
                {
                    var info = await client.GetAsync(id);
                    if (info.Status.IsTerminal())
                    {
                        finished[id] = info;
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    break;
                }
            }

            Say($"{finished.Count}/{runs} finished");
            if (finished.Count < runs)
            {
                await Task.Delay(1000);
            }
        }

        await stop.CancelAsync();
        var completed = finished.Values.Count(r => r.Status == RunStatus.Completed);
        var failed = finished.Count - completed;
        var lost = runs - finished.Count;

        await using var data = NpgsqlDataSource.Create(owner);
        await using var ledger = data.CreateCommand("""
            SELECT count(*), count(DISTINCT (run_id, step)), coalesce(sum(deliveries - 1), 0)
            FROM spine_demo_ledger WHERE run_id = ANY(@ids)
            """);
        ledger.Parameters.AddWithValue("ids", runIds);
        long effects, distinct, redeliveries;
        await using (var reader = await ledger.ExecuteReaderAsync())
        {
            await reader.ReadAsync();
            (effects, distinct, redeliveries) = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
        }

        await using var attempts = data.CreateCommand("SELECT count(*) FROM spine_journal WHERE run_id = ANY(@ids) AND kind = 7");
        attempts.Parameters.AddWithValue("ids", runIds);
        var failedAttempts = (long)(await attempts.ExecuteScalarAsync())!;

        await host.StopAsync();
        await silo.StopAsync(TimeSpan.FromSeconds(20));
        await silo.DisposeAsync();

        Print("runs", runs);
        Print("runs_completed", completed);
        Print("runs_failed", failed);
        Print("runs_lost", lost);
        Print("silo_kills", kills);
        Print("steps_expected", runs * 10L);
        Print("effects_applied", distinct);
        Print("duplicate_effects", effects - distinct);
        Print("redeliveries_absorbed", redeliveries);
        Print("attempts_failed_transiently", failedAttempts);
        Print("success_rate", (double)completed / runs);
        Print("seconds", Math.Round(clock.Elapsed.TotalSeconds, 1));
        return lost == 0 && effects == distinct && completed == runs ? 0 : 1;
    }

    private static void Print(string name, object value) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name}={value}"));
}
