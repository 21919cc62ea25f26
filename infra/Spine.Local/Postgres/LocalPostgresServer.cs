using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Spine.Local.Postgres;

/// <summary>
/// A PostgreSQL server run from the machine's own binaries, for the silo's embedded default, the demo, the
/// integration tests and the benchmark: either a throwaway cluster or a persistent one that later processes
/// reuse while it is running. It listens on 127.0.0.1 only and, when this process is root, runs as the
/// <c>postgres</c> system user. The jobs are split: <see cref="PostgresBinaries"/> finds the binaries,
/// <see cref="PostgresProcessRunner"/> runs them as the right user, <see cref="PostgresDataFolder"/> creates
/// the cluster, <see cref="PostgresServerControl"/> runs the server process; this class puts them in order.
/// </summary>
public sealed class LocalPostgresServer : IAsyncDisposable
{
    private static readonly TimeSpan _connectTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan _lockTimeout = TimeSpan.FromMinutes(2);

    private readonly LocalPostgresOptions _options;
    private readonly ILogger _logger;
    private readonly PostgresDataFolder _folder;
    private readonly PostgresServerControl _server;
    private readonly string? _ownedSocketDirectory;
    private readonly bool _startedByUs;
    private readonly Lock _stopGate = new();
    private Task? _stopTask;

    private LocalPostgresServer(
        LocalPostgresOptions options,
        ILogger logger,
        PostgresProcessRunner runner,
        PostgresDataFolder folder,
        PostgresServerControl server,
        string? ownedSocketDirectory,
        int port,
        bool startedByUs)
    {
        _options = options;
        _logger = logger;
        _folder = folder;
        _server = server;
        _ownedSocketDirectory = ownedSocketDirectory;
        _startedByUs = startedByUs;
        Port = port;
        BinDirectory = runner.BinDirectory;
        ConnectionString = BuildConnectionString(port, options.Database, pooling: true);
        AdminConnectionString = BuildConnectionString(port, "postgres", pooling: true);
    }

    /// <summary>Connection string to <see cref="LocalPostgresOptions.Database"/> as user <c>postgres</c> over loopback TCP.</summary>
    public string ConnectionString { get; }

    /// <summary>Connection string to the <c>postgres</c> maintenance database, for creating or dropping databases.</summary>
    public string AdminConnectionString { get; }

    /// <summary>Loopback TCP port the server listens on.</summary>
    public int Port { get; }

    /// <summary>Folder holding <c>pg_ctl</c>, <c>psql</c>, <c>pgbench</c> and the other PostgreSQL binaries used.</summary>
    public string BinDirectory { get; }

    /// <summary>
    /// Starts (or reuses) a local PostgreSQL cluster in <see cref="LocalPostgresOptions.DataDirectory"/>, waits
    /// until it accepts connections and creates <see cref="LocalPostgresOptions.Database"/> if missing.
    /// </summary>
    /// <param name="options">Where and how to run the server.</param>
    /// <param name="logger">Optional logger for progress messages.</param>
    /// <param name="ct">Cancels the start; a server started by this call is stopped again.</param>
    /// <returns>The running server.</returns>
    /// <exception cref="LocalPostgresException">The binaries are missing or a step (initdb, start, connect) failed.</exception>
    public static async Task<LocalPostgresServer> StartAsync(
        LocalPostgresOptions options,
        ILogger? logger = null,
        CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.DataDirectory);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.Database);
        ArgumentOutOfRangeException.ThrowIfNegative(options.Port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.Port, IPEndPoint.MaxPort);
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("LocalPostgresServer runs PostgreSQL's Unix binaries and is not supported on Windows.");
        }

        var log = logger ?? NullLogger.Instance;
        var folder = new PostgresDataFolder(options.DataDirectory);
        var runner = await PostgresProcessRunner.CreateAsync(PostgresBinaries.FindBinDirectory(), ct);
        var control = new PostgresServerControl(runner, folder, log);

        var createdRoot = !Directory.Exists(folder.RootDirectory);
        Directory.CreateDirectory(folder.RootDirectory);

        // A second silo process on the same machine may start on the same persistent folder at the same
        // moment; the lock keeps two initdb or pg_ctl start runs from racing on one cluster.
        await using var folderLock = await FolderLock.AcquireAsync(folder.LockFile, _lockTimeout, ct);

        var startAttempted = false;
        string? ownedSocketDirectory = null;
        try
        {
            int port;
            var startedByUs = false;
            await folder.MakeReachableAsync(runner, ct);
            if (folder.HasCluster && await control.IsRunningAsync(ct))
            {
                port = folder.ReadPortFromPidFile();
                log.LogInformation("Reusing PostgreSQL already running from {ClusterDirectory} on port {Port}", folder.ClusterDirectory, port);
            }
            else
            {
                await folder.MakeWritableAsync(runner, ct);
                if (!folder.HasCluster)
                {
                    await folder.InitDbAsync(runner, log, ct);
                }

                var (socketDirectory, owned) = await folder.SocketDirectoryAsync(runner, ct);
                ownedSocketDirectory = owned ? socketDirectory : null;
                startAttempted = true;
                port = await control.StartAsync(options.Port, socketDirectory, options.ServerSettings, ct);
                startedByUs = true;
                if (options.StopWithThisProcess)
                {
                    control.StopWhenProcessExits(Environment.ProcessId, options.DeleteOnStop);
                }
            }

            var server = new LocalPostgresServer(options, log, runner, folder, control, ownedSocketDirectory, port, startedByUs);
            await server.WaitForConnectionAsync(ct);
            await server.EnsureDatabaseAsync(ct);
            log.LogInformation("Local PostgreSQL ready on 127.0.0.1:{Port}, database {Database}", port, options.Database);
            return server;
        }
        catch
        {
            // Leave nothing running or behind that this call created, so a failed or cancelled start can be retried.
            // A pg_ctl start cancelled half way may still have launched a postmaster, hence startAttempted.
            if (startAttempted)
            {
                await control.TryStopAsync();
            }

            if (ownedSocketDirectory is not null)
            {
                PostgresDataFolder.TryDelete(ownedSocketDirectory, log);
            }

            if (createdRoot || options.DeleteOnStop)
            {
                await folderLock.DisposeAsync();
                PostgresDataFolder.TryDelete(folder.RootDirectory, log);
            }

            throw;
        }
    }

    /// <summary>
    /// Stops the server with <c>pg_ctl stop -m fast</c> if this instance started it (or if
    /// <see cref="LocalPostgresOptions.DeleteOnStop"/> is set), then deletes the data folder when
    /// <see cref="LocalPostgresOptions.DeleteOnStop"/> is set. Safe to call more than once.
    /// </summary>
    /// <returns>A task that completes when the server is stopped and the folder removed.</returns>
    public Task StopAsync()
    {
        lock (_stopGate)
        {
            return _stopTask ??= StopCoreAsync();
        }
    }

    /// <summary>
    /// Crash-restarts the server: <c>pg_ctl restart -m immediate</c> drops every connection without a
    /// checkpoint, as a crash would; the server recovers from its WAL and listens on the same port again.
    /// Completes once it accepts connections. For fault tests and the <c>pg-restart</c> benchmark.
    /// </summary>
    /// <param name="ct">Cancels the wait.</param>
    /// <returns>A task that completes when the server accepts connections again.</returns>
    public async Task CrashRestartAsync(CancellationToken ct = default)
    {
        await _server.CrashRestartAsync(ct);
        await WaitForConnectionAsync(ct);
    }

    /// <summary>Same as <see cref="StopAsync"/>.</summary>
    /// <returns>A task that completes when the server is stopped.</returns>
    public async ValueTask DisposeAsync() => await StopAsync();

    private async Task StopCoreAsync()
    {
        // Idle pooled connections to a server that is about to go would only fail later in someone else's code.
        await using (var connection = new NpgsqlConnection(ConnectionString))
        {
            NpgsqlConnection.ClearPool(connection);
        }

        await using (var connection = new NpgsqlConnection(AdminConnectionString))
        {
            NpgsqlConnection.ClearPool(connection);
        }

        if ((_startedByUs || _options.DeleteOnStop) && _folder.HasCluster)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            await _server.StopAsync(timeout.Token);
        }

        if (_ownedSocketDirectory is not null)
        {
            PostgresDataFolder.TryDelete(_ownedSocketDirectory, _logger);
        }

        if (_options.DeleteOnStop)
        {
            await PostgresDataFolder.DeleteWithRetryAsync(_folder.RootDirectory);
            _logger.LogInformation("Deleted local PostgreSQL folder {DataDirectory}", _folder.RootDirectory);
        }
    }

    private static string BuildConnectionString(int port, string database, bool pooling)
    {
        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1",
            Port = port,
            Username = "postgres",
            Database = database,
            Pooling = pooling,
            // Local trust cluster: showing parameter values in errors helps debugging and leaks nothing.
            IncludeErrorDetail = true,
        };
        return builder.ConnectionString;
    }

    private async Task WaitForConnectionAsync(CancellationToken ct)
    {
        var connectionString = BuildConnectionString(Port, "postgres", pooling: false);
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await using var connection = new NpgsqlConnection(connectionString);
                await connection.OpenAsync(ct);
                return;
            }
            catch (NpgsqlException ex) when (deadline.Elapsed < _connectTimeout)
            {
                _logger.LogDebug("PostgreSQL on port {Port} not accepting connections yet: {Message}", Port, ex.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(250), ct);
            }
            catch (NpgsqlException ex)
            {
                throw new LocalPostgresException(
                    $"PostgreSQL on 127.0.0.1:{Port} (cluster {_folder.ClusterDirectory}) did not accept connections within "
                    + $"{_connectTimeout.TotalSeconds:0} s: {ex.Message}{_folder.ReadLogTail()}",
                    ex);
            }
        }
    }

    private async Task EnsureDatabaseAsync(CancellationToken ct)
    {
        if (_options.Database == "postgres")
        {
            return;
        }

        await using var connection = new NpgsqlConnection(BuildConnectionString(Port, "postgres", pooling: false));
        await connection.OpenAsync(ct);

        await using (var exists = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = @name", connection))
        {
            exists.Parameters.AddWithValue("name", _options.Database);
            if (await exists.ExecuteScalarAsync(ct) is not null)
            {
                return;
            }
        }

        var quoted = "\"" + _options.Database.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
        try
        {
            await using var create = new NpgsqlCommand($"CREATE DATABASE {quoted}", connection);
            await create.ExecuteNonQueryAsync(ct);
            _logger.LogInformation("Created database {Database}", _options.Database);
        }
        catch (PostgresException ex) when (ex.SqlState is PostgresErrorCodes.DuplicateDatabase or PostgresErrorCodes.UniqueViolation)
        {
            // Another process sharing this server created it between the check and the CREATE.
        }
        catch (PostgresException ex)
        {
            throw new LocalPostgresException($"Could not create database {quoted} on 127.0.0.1:{Port}: {ex.Message}", ex);
        }
    }
}
