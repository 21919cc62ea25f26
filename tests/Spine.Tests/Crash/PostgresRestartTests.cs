using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Spine.Client;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Local.Postgres;
using Spine.Local.Silos;
using Spine.Storage;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Crash;

/// <summary>
/// PostgreSQL crash-restarted under a real silo process while runs are mid-step: the silo stays up, runs
/// wait it out in place and continue as soon as the server answers, without waiting for the recovery sweep.
/// </summary>
public sealed class PostgresRestartTests : IAsyncLifetime
{
    private const int Runs = 200;
    private const int Steps = 6;
    private readonly string _logFile = Path.Combine(Path.GetTempPath(), $"spine-pg-restart-{Guid.NewGuid():N}.log");
    private LocalPostgresServer _server = null!;
    private string _runtime = null!;
    private SiloProcess _silo = null!;
    private IHost? _clientHost;

    public async Task InitializeAsync()
    {
        // A server of its own: the shared one must not restart under the other tests.
        _server = await LocalPostgresServer.StartAsync(new LocalPostgresOptions
        {
            DataDirectory = Path.Combine(Path.GetTempPath(), "spine-pg-restart-" + Guid.NewGuid().ToString("N")[..8]),
            DeleteOnStop = true,
            StopWithThisProcess = true,
        });
        _runtime = await SpineDatabaseSetup.ApplySchemaAsync(_server.ConnectionString, includeDemo: true);
        var cluster = "pg-restart-" + Guid.NewGuid().ToString("N")[..8];
        // The sweep comes once a minute: a run that waited for it would miss the test's bound by far.
        _silo = SiloProcess.Start(TestProcesses.Silo(_runtime, cluster, logFile: _logFile, resumeReminderPeriod: TimeSpan.FromMinutes(1)));
        await _silo.WaitReadyAsync(TimeSpan.FromSeconds(90));
        _clientHost = await TestProcesses.StartClientAsync(_runtime, cluster);
    }

    public async Task DisposeAsync()
    {
        await TestProcesses.StopClientAsync(_clientHost);

        await _silo.StopAsync(TimeSpan.FromSeconds(20));
        await _silo.DisposeAsync();
        await _server.StopAsync();
    }

    [Fact]
    public async Task PostgresCrashRestartedTwice_WhileRunsAreMidStep_AllCompleteWithEachEffectOnceWithoutTheSweep()
    {
        var client = _clientHost!.Services.GetRequiredService<ISpineClient>();
        var batch = Guid.NewGuid().ToString("N");
        var ids = (await Task.WhenAll(Enumerable.Range(0, Runs).Select(i =>
            client.StartAsync("ledger", new LedgerInput(Steps, StepMilliseconds: 300), idempotencyKey: $"{batch}-{i}")))).Select(r => r.RunId).ToArray();
        await Eventually.GetAsync(() => CountAsync("SELECT count(DISTINCT run_id) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids),
            n => n == Runs, TimeSpan.FromSeconds(60), "every run's first step");

        await _server.CrashRestartAsync();
        await Task.Delay(TimeSpan.FromSeconds(1));
        await _server.CrashRestartAsync();
        var back = DateTime.UtcNow;

        var done = await Eventually.GetAsync(() => CountAsync("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status IN (3, 4, 5, 8)", ids),
            n => n == Runs, TimeSpan.FromSeconds(120), "every run to finish");
        var finishedIn = DateTime.UtcNow - back;

        Assert.True(_silo.IsRunning, "the silo process exited during the restarts");
        Assert.Equal((long)Runs, await CountAsync("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status = 3", ids));
        Assert.Equal((long)Runs * Steps, await CountAsync("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids));
        Assert.Equal((long)Runs * Steps, await CountAsync("SELECT count(DISTINCT (run_id, step)) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ids));

        // Six 300 ms steps take about 2 s; the first sweep after the restarts comes up to a minute later.
        Assert.True(finishedIn < TimeSpan.FromSeconds(30), $"the runs took {finishedIn} to finish after PostgreSQL was back");
    }

    private async Task<long> CountAsync(string sql, string[] ids)
    {
        await using var data = NpgsqlDataSource.Create(_server.ConnectionString);
        await using var command = data.CreateCommand(sql);
        command.Parameters.AddWithValue("ids", ids);
        return (long)(await command.ExecuteScalarAsync())!;
    }
}
