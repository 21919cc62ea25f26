using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Spine.Client;
using Spine.Local.Postgres;
using Spine.Local.Silos;

namespace Spine.Bench;

/// <summary>
/// A PostgreSQL of its own, silo processes with the demo on, and a client host: the set-up of the
/// process-level workloads (failover, pg-restart).
/// </summary>
internal sealed class ProcessCluster : IAsyncDisposable
{
    private ProcessCluster(LocalPostgresServer server, string runtime, List<SiloProcess> silos, IHost host)
    {
        Server = server;
        Runtime = runtime;
        Silos = silos;
        Host = host;
        Client = host.Services.GetRequiredService<ISpineClient>();
        Grains = host.Services.GetRequiredService<IClusterClient>();
        Data = NpgsqlDataSource.Create(server.ConnectionString);
    }

    public LocalPostgresServer Server { get; }

    public string Runtime { get; }

    public List<SiloProcess> Silos { get; }

    public IHost Host { get; }

    public ISpineClient Client { get; }

    public IClusterClient Grains { get; }

    /// <summary>An owner connection for reading figures.</summary>
    public NpgsqlDataSource Data { get; }

    /// <summary>
    /// Starts PostgreSQL, <paramref name="silos"/> silo processes with the given sweep period (and
    /// <paramref name="environment"/>: configuration as environment variables), and a client.
    /// </summary>
    public static async Task<ProcessCluster> StartAsync(string name, int silos, TimeSpan resumeReminderPeriod, IReadOnlyDictionary<string, string>? environment = null)
    {
        var server = await LocalPostgresServer.StartAsync(new LocalPostgresOptions
        {
            DataDirectory = Path.Combine(Path.GetTempPath(), $"spine-{name}-" + Guid.NewGuid().ToString("N")[..8]),
            DeleteOnStop = true,
            StopWithThisProcess = true,
            ServerSettings = new Dictionary<string, string> { ["max_connections"] = "300" },
        });
        var runtime = await SpineDatabaseSetup.ApplySchemaAsync(server.ConnectionString, includeDemo: true);
        var cluster = $"{name}-" + Guid.NewGuid().ToString("N")[..8];
        var processes = Enumerable.Range(0, silos)
            .Select(_ => SiloProcess.Start(SiloProcessOptions.OnFreePorts(runtime, cluster, BenchEnvironment.AuditKey) with
            {
                ResumeReminderPeriod = resumeReminderPeriod,
                Environment = environment ?? new Dictionary<string, string>(),
            }))
            .ToList();
        await Task.WhenAll(processes.Select(s => s.WaitReadyAsync(TimeSpan.FromSeconds(90))));
        var host = await SiloClientHost.StartAsync(processes[0].Options);
        return new ProcessCluster(server, runtime, processes, host);
    }

    /// <summary>A count over the given runs (the query names them <c>@ids</c>).</summary>
    public async Task<long> CountAsync(string sql, string[] ids) => await ScalarAsync<long>(sql, ids);

    /// <summary>A scalar over the given runs (the query names them <c>@ids</c>).</summary>
    public async Task<T> ScalarAsync<T>(string sql, string[] ids)
    {
        await using var command = Data.CreateCommand(sql);
        command.Parameters.AddWithValue("ids", ids);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Prints one figure as a name=value line on stdout.</summary>
    public static void Print(string name, object value) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name}={value}"));

    public async ValueTask DisposeAsync()
    {
        await Host.StopAsync();
        Host.Dispose();
        foreach (var silo in Silos)
        {
            await silo.StopAsync(TimeSpan.FromSeconds(20));
            await silo.DisposeAsync();
        }

        await Data.DisposeAsync();
        await Server.StopAsync();
    }
}
