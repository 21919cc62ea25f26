using System.Globalization;
using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Npgsql;
using Orleans.Configuration;
using Spine.Client;
using Spine.Hosting;
using Spine.Local.Network;
using Spine.Local.Postgres;

namespace Spine.Bench;

/// <summary>
/// What the workloads run against: one PostgreSQL server (a throwaway local one, or the one named by
/// <c>SPINE_BENCH_CONNECTION</c>) and one silo hosted in this process, driven through its own grain factory.
/// </summary>
public sealed class BenchEnvironment : IAsyncDisposable
{
    private readonly LocalPostgresServer? _server;
    private readonly IHost _app;

    private BenchEnvironment(LocalPostgresServer? server, string ownerConnectionString, string? pgBinDirectory, PostgresCpu? postgresCpu, IHost app)
    {
        _server = server;
        PostgresCpu = postgresCpu;
        OwnerConnectionString = ownerConnectionString;
        PgBinDirectory = pgBinDirectory;
        _app = app;
        GrainFactory = app.Services.GetRequiredService<IGrainFactory>();
        Client = new SpineClient(GrainFactory);
    }

    /// <summary>The silo's grain factory.</summary>
    public IGrainFactory GrainFactory { get; }

    /// <summary>An owner (superuser) connection to the benchmark database.</summary>
    public string OwnerConnectionString { get; }

    /// <summary>The folder holding pgbench, when known.</summary>
    public string? PgBinDirectory { get; }

    /// <summary>CPU accounting of the local PostgreSQL server; null for an external one.</summary>
    public PostgresCpu? PostgresCpu { get; }

    /// <summary>The client over the silo's grain factory.</summary>
    public SpineClient Client { get; }

    /// <summary>Starts PostgreSQL (or connects to the given one), applies the schema and starts the silo.</summary>
    public static async Task<BenchEnvironment> StartAsync(bool memoryReminders, bool autoPrepareAll)
    {
        LocalPostgresServer? server = null;
        PostgresCpu? postgresCpu = null;
        string owner;
        string? bin;
        var external = Environment.GetEnvironmentVariable("SPINE_BENCH_CONNECTION");
        if (!string.IsNullOrWhiteSpace(external))
        {
            owner = external;
            bin = Environment.GetEnvironmentVariable("SPINE_PG_BIN");
            Progress.Say("using the PostgreSQL server named by SPINE_BENCH_CONNECTION");
        }
        else
        {
            var dataDirectory = Path.Combine(Path.GetTempPath(), "spine-bench-" + Guid.NewGuid().ToString("N")[..12]);
            Progress.Say($"starting a throwaway PostgreSQL in {dataDirectory} (default durability: fsync and synchronous_commit on)");
            server = await LocalPostgresServer.StartAsync(new LocalPostgresOptions
            {
                DataDirectory = dataDirectory,
                DeleteOnStop = true,
                StopWithThisProcess = true,
                // The silo's pools plus pgbench's 64 clients, with room to spare.
                ServerSettings = new Dictionary<string, string> { ["max_connections"] = "300" },
            });
            owner = server.ConnectionString;
            bin = server.BinDirectory;
            postgresCpu = PostgresCpu.FromDataDirectory(dataDirectory);
        }

        try
        {
            var runtime = await SpineDatabaseSetup.ApplySchemaAsync(owner, includeDemo: false);
            await ReportServerSettingsAsync(owner);
            if (autoPrepareAll)
            {
                // Spine's own data source gets these from SpineDatabase.Tune; the Orleans ADO.NET providers are
                // handed the raw string. Putting them in the string itself gives both the same.
                Progress.Say("DIAGNOSTIC: auto-prepare also for the Orleans ADO.NET providers (--autoprepare-all); not the product's figures");
                runtime = new NpgsqlConnectionStringBuilder(runtime) { MaxAutoPrepare = 32, AutoPrepareMinUsages = 2 }.ConnectionString;
            }

            var app = await StartSiloAsync(runtime, memoryReminders);
            return new BenchEnvironment(server, owner, bin, postgresCpu, app);
        }
        catch
        {
            if (server is not null)
            {
                await server.StopAsync();
            }

            throw;
        }
    }

    /// <summary>Runs CHECKPOINT, so that each measured phase starts with no dirty pages left by the previous one.</summary>
    public async Task CheckpointAsync()
    {
        await using var connection = new NpgsqlConnection(OwnerConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("CHECKPOINT", connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        Progress.Say("stopping the silo");
        try
        {
            await _app.StopAsync();
        }
        finally
        {
            _app.Dispose();
            if (_server is not null)
            {
                Progress.Say("stopping PostgreSQL and deleting its folder");
                await _server.StopAsync();
            }
        }
    }

    /// <summary>The journal key of this benchmark's silos: a fresh one per invocation, on a fresh database.</summary>
    public static string AuditKey { get; } = Spine.Audit.AuditKey.Generate();

    private static async Task<IHost> StartSiloAsync(string runtimeConnectionString, bool memoryReminders)
    {
        var clusterId = "bench-" + DateTime.UtcNow.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture) + "-" + Environment.ProcessId;
        var siloPort = LoopbackPorts.FreePort();
        var gatewayPort = LoopbackPorts.FreePort();
        Progress.Say($"starting one silo in this process (cluster {clusterId}, silo port {siloPort}, gateway {gatewayPort})");

        // No command-line arguments: the benchmark's own arguments are not silo configuration. The silo is
        // wired as the shipped host wires it (ADO.NET clustering, then AddSpine), without the dashboard.
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
        builder.Configuration["Spine:Audit:Key"] = AuditKey;
        builder.UseOrleans(silo =>
        {
            silo.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = clusterId;
                // A service id of its own keeps the benchmark's reminders apart on a shared server.
                o.ServiceId = clusterId;
            });
            silo.ConfigureEndpoints(IPAddress.Loopback, siloPort, gatewayPort, listenOnAnyHostAddress: false);
            silo.UseAdoNetClustering(o =>
            {
                o.Invariant = "Npgsql";
                o.ConnectionString = runtimeConnectionString;
            });
            silo.AddSpine(runtimeConnectionString, builder.Configuration.GetSection(SpineOptions.SectionName));
            silo.AddActivityPropagation();
        });
        builder.Services.AddSpineWorkflow<BenchWorkflow, BenchInput, BenchOutput>();
        AgentWorkload.Register(builder.Services);
        AdversarialWorkload.Register(builder.Services);

        // Warning and above only, and on stderr: stdout carries nothing but the figures.
        builder.Services.PostConfigure<LoggerFilterOptions>(o =>
        {
            o.Rules.Clear();
            o.MinLevel = LogLevel.Warning;
        });
        builder.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        SecretsWorkload.Register(builder.Services);

        if (memoryReminders)
        {
            Progress.Say("DIAGNOSTIC: reminders held in memory, not in PostgreSQL (--memory-reminders); not the product's figures");
            builder.ConfigureContainer(new EditingServiceProviderFactory(services =>
            {
                services.RemoveAll<IReminderTable>();
                services.AddSingleton<IReminderTable, MemoryReminderTable>();
            }));
        }

        var app = builder.Build();
        await app.StartAsync();
        var options = app.Services.GetSpineOptions();
        var collection = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<GrainCollectionOptions>>().Value;
        Progress.Say($"silo up (journal writers {options.JournalWriters}, max batch {options.JournalMaxBatch}, resume reminder period {options.ResumeReminderPeriod}, idle activations collected after {collection.CollectionAge})");
        return app;
    }

    private static async Task ReportServerSettingsAsync(string owner)
    {
        await using var connection = new NpgsqlConnection(owner);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'max_connections', 'shared_buffers', 'commit_delay', 'server_version')",
            connection);
        Progress.Say($"PostgreSQL: {await command.ExecuteScalarAsync()}");
    }
}
