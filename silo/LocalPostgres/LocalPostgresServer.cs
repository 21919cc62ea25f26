using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Spine.Silo.LocalPostgres;

/// <summary>
/// Settings for <see cref="LocalPostgresServer.StartAsync"/>.
/// </summary>
public sealed class LocalPostgresOptions
{
    /// <summary>
    /// Folder holding the cluster; created if missing. The cluster itself lives in its <c>pgdata</c>
    /// subfolder, the server log in <c>postgres.log</c> and the Unix socket in the folder itself.
    /// </summary>
    public required string DataDirectory { get; init; }

    /// <summary>Loopback TCP port to listen on; 0 picks a free one.</summary>
    public int Port { get; init; }

    /// <summary>
    /// When true, <see cref="LocalPostgresServer.StopAsync"/> stops the server even if it was already
    /// running, and deletes <see cref="DataDirectory"/>. Meant for throwaway test clusters.
    /// </summary>
    public bool DeleteOnStop { get; init; }

    /// <summary>Database that <see cref="LocalPostgresServer.ConnectionString"/> points at; created if missing.</summary>
    public string Database { get; init; } = "spine";

    /// <summary>
    /// Extra server settings passed as <c>-c name=value</c>, e.g. <c>max_connections</c>. They are merged
    /// over the defaults (<c>max_connections=200</c>, <c>shared_buffers=128MB</c>).
    /// </summary>
    public IReadOnlyDictionary<string, string>? ServerSettings { get; init; }
}

/// <summary>
/// A PostgreSQL server run from the machine's own binaries (<c>initdb</c>, <c>pg_ctl</c>), for the embedded
/// silo default, the integration tests and the benchmark. Either a throwaway cluster or a persistent one
/// that later processes reuse while it is running.
/// </summary>
public sealed class LocalPostgresServer : IAsyncDisposable
{
    private const string ClusterFolderName = "pgdata";
    private const string LogFileName = "postgres.log";
    private const string LockFileName = ".spine-local-postgres.lock";
    private const string SystemUser = "postgres";

    // Unix socket paths are limited to 107 bytes; leave room for "/.s.PGSQL.65535.lock".
    private const int MaxSocketDirectoryLength = 85;

    private static readonly TimeSpan _connectTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan _lockTimeout = TimeSpan.FromMinutes(2);

    private static readonly IReadOnlyDictionary<string, string> _defaultSettings = new Dictionary<string, string>
    {
        ["max_connections"] = "200",
        ["shared_buffers"] = "128MB",
    };

    private readonly LocalPostgresOptions _options;
    private readonly ILogger _logger;
    private readonly ProcessRunner _runner;
    private readonly string _clusterDirectory;
    private readonly string? _ownedSocketDirectory;
    private readonly bool _startedByUs;
    private readonly Lock _stopGate = new();
    private Task? _stopTask;

    private LocalPostgresServer(
        LocalPostgresOptions options,
        ILogger logger,
        ProcessRunner runner,
        string clusterDirectory,
        string? ownedSocketDirectory,
        int port,
        bool startedByUs)
    {
        _options = options;
        _logger = logger;
        _runner = runner;
        _clusterDirectory = clusterDirectory;
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
        var rootDirectory = Path.GetFullPath(options.DataDirectory);
        var clusterDirectory = Path.Combine(rootDirectory, ClusterFolderName);
        var binDirectory = FindBinDirectory();
        var runAsSystemUser = await IsRootAsync(ct);
        var runner = new ProcessRunner(binDirectory, runAsSystemUser ? await FindRunUserAsync(ct) : null);

        var createdRoot = !Directory.Exists(rootDirectory);
        Directory.CreateDirectory(rootDirectory);

        // A second silo process on the same machine may start on the same persistent folder at the same
        // moment; the lock keeps two initdb or pg_ctl start runs from racing on one cluster.
        await using var folderLock = await FolderLock.AcquireAsync(Path.Combine(rootDirectory, LockFileName), _lockTimeout, ct);

        var startAttempted = false;
        var startedByUs = false;
        string? ownedSocketDirectory = null;
        try
        {
            if (runAsSystemUser)
            {
                await EnsureParentsTraversableAsync(rootDirectory, ct);
            }

            int port;
            if (File.Exists(Path.Combine(clusterDirectory, "PG_VERSION"))
                && await IsRunningAsync(runner, clusterDirectory, ct))
            {
                port = ReadPortFromPidFile(clusterDirectory);
                log.LogInformation("Reusing PostgreSQL already running from {ClusterDirectory} on port {Port}", clusterDirectory, port);
            }
            else
            {
                if (runAsSystemUser)
                {
                    // The postgres user writes the cluster, the log and the socket into this folder.
                    await ProcessRunner.RunCheckedAsync("chown", ["-R", SystemUser + ":", rootDirectory], ct);
                }

                if (!File.Exists(Path.Combine(clusterDirectory, "PG_VERSION")))
                {
                    await InitDbAsync(runner, clusterDirectory, log, ct);
                }

                var socketDirectory = rootDirectory;
                if (rootDirectory.Length > MaxSocketDirectoryLength)
                {
                    socketDirectory = await CreateShortSocketDirectoryAsync(runner, rootDirectory, ct);
                    ownedSocketDirectory = socketDirectory;
                }

                startAttempted = true;
                port = await StartClusterAsync(runner, options, rootDirectory, clusterDirectory, socketDirectory, log, ct);
                startedByUs = true;
            }

            var server = new LocalPostgresServer(options, log, runner, clusterDirectory, ownedSocketDirectory, port, startedByUs);
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
                await TryStopClusterAsync(runner, clusterDirectory, log);
            }

            if (ownedSocketDirectory is not null)
            {
                TryDeleteDirectory(ownedSocketDirectory, log);
            }

            if (createdRoot || options.DeleteOnStop)
            {
                await folderLock.DisposeAsync();
                TryDeleteDirectory(rootDirectory, log);
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
        var logFile = Path.Combine(Path.GetDirectoryName(_clusterDirectory)!, LogFileName);
        await _runner.RunAsync("pg_ctl", ["-D", _clusterDirectory, "-l", logFile, "-m", "immediate", "-w", "-t", "60", "restart"], "pg_ctl restart", ct);
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

        if ((_startedByUs || _options.DeleteOnStop) && File.Exists(Path.Combine(_clusterDirectory, "PG_VERSION")))
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            if (await IsRunningAsync(_runner, _clusterDirectory, timeout.Token))
            {
                _logger.LogInformation("Stopping local PostgreSQL on port {Port}", Port);
                await _runner.RunAsync("pg_ctl", ["stop", "-D", _clusterDirectory, "-m", "fast", "-w", "-t", "60"], "pg_ctl stop", timeout.Token);
            }
        }

        if (_ownedSocketDirectory is not null)
        {
            TryDeleteDirectory(_ownedSocketDirectory, _logger);
        }

        if (_options.DeleteOnStop)
        {
            var rootDirectory = Path.GetDirectoryName(_clusterDirectory)!;
            await DeleteDirectoryWithRetryAsync(rootDirectory);
            _logger.LogInformation("Deleted local PostgreSQL folder {DataDirectory}", rootDirectory);
        }
    }

    private static async Task DeleteDirectoryWithRetryAsync(string directory)
    {
        // Right after a fast stop a backend may still be unlinking its temp files.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                if (Directory.Exists(directory))
                {
                    Directory.Delete(directory, recursive: true);
                }

                return;
            }
            catch (Exception ex) when (attempt < 5 && ex is IOException or UnauthorizedAccessException)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt));
            }
        }
    }

    private static void TryDeleteDirectory(string directory, ILogger logger)
    {
        try
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            logger.LogWarning(ex, "Could not delete {Directory}", directory);
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
                    $"PostgreSQL on 127.0.0.1:{Port} (cluster {_clusterDirectory}) did not accept connections within "
                    + $"{_connectTimeout.TotalSeconds:0} s: {ex.Message}{ReadLogTail(Path.GetDirectoryName(_clusterDirectory)!)}",
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

    private static string FindBinDirectory()
    {
        var fromEnvironment = Environment.GetEnvironmentVariable("SPINE_PG_BIN");
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
        {
            var directory = Path.GetFullPath(fromEnvironment);
            return HasServerBinaries(directory)
                ? directory
                : throw new LocalPostgresException(
                    $"SPINE_PG_BIN is set to '{fromEnvironment}', but that folder does not contain pg_ctl, initdb and postgres.");
        }

        // Debian's /usr/bin holds only wrapper scripts without initdb, so the versioned folder is preferred.
        const string debianRoot = "/usr/lib/postgresql";
        if (Directory.Exists(debianRoot))
        {
            var newest = Directory.GetDirectories(debianRoot)
                .Select(versionDirectory => (Version: ParseVersion(Path.GetFileName(versionDirectory)), Bin: Path.Combine(versionDirectory, "bin")))
                .Where(candidate => candidate.Version is not null && File.Exists(Path.Combine(candidate.Bin, "pg_ctl")))
                .OrderByDescending(candidate => candidate.Version)
                .Select(candidate => candidate.Bin)
                .FirstOrDefault();
            if (newest is not null)
            {
                return newest;
            }
        }

        foreach (var pathDirectory in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var pgCtl = new FileInfo(Path.Combine(pathDirectory, "pg_ctl"));
            if (!pgCtl.Exists)
            {
                continue;
            }

            // Follow symlinks such as /usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl so initdb is found beside it.
            var target = pgCtl.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? pgCtl.FullName;
            foreach (var candidate in new[] { Path.GetDirectoryName(target)!, Path.GetFullPath(pathDirectory) }.Distinct(StringComparer.Ordinal))
            {
                if (HasServerBinaries(candidate))
                {
                    return candidate;
                }
            }
        }

        throw new LocalPostgresException(
            "PostgreSQL server binaries (pg_ctl, initdb, postgres) were not found in /usr/lib/postgresql/*/bin or on PATH. "
            + "Install them with `apt-get install postgresql`, or set SPINE_PG_BIN to the folder that holds them.");
    }

    private static Version? ParseVersion(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }

        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var major))
        {
            return new Version(major, 0);
        }

        return Version.TryParse(text, out var version) ? version : null;
    }

    private static bool HasServerBinaries(string directory) =>
        File.Exists(Path.Combine(directory, "pg_ctl"))
        && File.Exists(Path.Combine(directory, "initdb"))
        && File.Exists(Path.Combine(directory, "postgres"));

    private static async Task<bool> IsRootAsync(CancellationToken ct)
    {
        if (Environment.UserName == "root")
        {
            return true;
        }

        var result = await ProcessRunner.RunRawAsync("id", ["-u"], workingDirectory: "/", ct);
        return result.ExitCode == 0 && result.StandardOutput.Trim() == "0";
    }

    private static async Task<string> FindRunUserAsync(CancellationToken ct)
    {
        var runUser = new[] { "/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser", "/bin/runuser" }.FirstOrDefault(File.Exists)
            ?? throw new LocalPostgresException(
                "Running as root, and initdb refuses to run as root, but `runuser` (util-linux) was not found to run it as the "
                + $"'{SystemUser}' user. Install util-linux or run as a non-root user.");

        var user = await ProcessRunner.RunRawAsync("id", ["-u", SystemUser], workingDirectory: "/", ct);
        if (user.ExitCode != 0)
        {
            throw new LocalPostgresException(
                $"Running as root, and initdb refuses to run as root, but there is no '{SystemUser}' system user to run it as. "
                + "`apt-get install postgresql` creates it; otherwise create the user or run as a non-root user.");
        }

        return runUser;
    }

    private static async Task EnsureParentsTraversableAsync(string directory, CancellationToken ct)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        // The postgres user has to walk down to the folder; root-only parents such as /root lack o+x.
        for (var parent = Path.GetDirectoryName(directory); !string.IsNullOrEmpty(parent); parent = Path.GetDirectoryName(parent))
        {
            if ((File.GetUnixFileMode(parent) & UnixFileMode.OtherExecute) == 0)
            {
                await ProcessRunner.RunCheckedAsync("chmod", ["o+x", parent], ct);
            }
        }
    }

    private static async Task<string> CreateShortSocketDirectoryAsync(ProcessRunner runner, string rootDirectory, CancellationToken ct)
    {
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(rootDirectory)))[..12];
        var socketDirectory = Path.Combine(Path.GetTempPath(), "spine-pg-" + hash);
        Directory.CreateDirectory(socketDirectory);
        if (runner.RunsAsSystemUser)
        {
            await ProcessRunner.RunCheckedAsync("chown", [SystemUser + ":", socketDirectory], ct);
            await EnsureParentsTraversableAsync(socketDirectory, ct);
        }

        return socketDirectory;
    }

    private static async Task InitDbAsync(ProcessRunner runner, string clusterDirectory, ILogger logger, CancellationToken ct)
    {
        logger.LogInformation("Creating PostgreSQL cluster in {ClusterDirectory}", clusterDirectory);

        // --no-locale keeps initdb independent of whatever LANG the machine has (an uninstalled locale makes it fail).
        await runner.RunAsync(
            "initdb",
            ["-D", clusterDirectory, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"],
            "initdb",
            ct);
    }

    private static async Task<int> StartClusterAsync(
        ProcessRunner runner,
        LocalPostgresOptions options,
        string rootDirectory,
        string clusterDirectory,
        string socketDirectory,
        ILogger logger,
        CancellationToken ct)
    {
        var logFile = Path.Combine(rootDirectory, LogFileName);

        var settings = new Dictionary<string, string>(_defaultSettings, StringComparer.Ordinal);
        foreach (var (name, value) in options.ServerSettings ?? new Dictionary<string, string>())
        {
            settings[name] = value;
        }

        // A port picked as free can be taken by someone else before the postmaster binds it; pick again then.
        var attempts = options.Port == 0 ? 3 : 1;
        for (var attempt = 1; ; attempt++)
        {
            var port = options.Port != 0 ? options.Port : PickFreePort();

            // pg_ctl hands -o to /bin/sh, so every value is shell-quoted.
            var serverOptions = new StringBuilder()
                .Append("-p ").Append(port.ToString(CultureInfo.InvariantCulture))
                .Append(" -c listen_addresses=127.0.0.1")
                .Append(" -k ").Append(ShellQuote(socketDirectory));
            foreach (var (name, value) in settings)
            {
                serverOptions.Append(" -c ").Append(ShellQuote(name + "=" + value));
            }

            logger.LogInformation("Starting PostgreSQL from {ClusterDirectory} on 127.0.0.1:{Port}", clusterDirectory, port);
            var result = await runner.RunAsync(
                "pg_ctl",
                ["-D", clusterDirectory, "-l", logFile, "-w", "-t", "60", "-o", serverOptions.ToString(), "start"],
                "pg_ctl start",
                ct,
                throwOnFailure: false);
            if (result.ExitCode == 0)
            {
                return port;
            }

            if (attempt >= attempts)
            {
                throw new LocalPostgresException(
                    $"pg_ctl start failed for cluster {clusterDirectory} on port {port} (exit code {result.ExitCode}).{result.FormatOutput()}{ReadLogTail(rootDirectory)}");
            }

            logger.LogWarning("pg_ctl start on port {Port} failed, retrying on another port", port);
        }
    }

    private static int PickFreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static async Task<bool> IsRunningAsync(ProcessRunner runner, string clusterDirectory, CancellationToken ct)
    {
        var result = await runner.RunAsync("pg_ctl", ["status", "-D", clusterDirectory], "pg_ctl status", ct, throwOnFailure: false);
        return result.ExitCode switch
        {
            0 => true,
            3 => false,
            _ => throw new LocalPostgresException(
                $"pg_ctl status failed for cluster {clusterDirectory} (exit code {result.ExitCode}); is the folder readable "
                + $"by the user running PostgreSQL?{result.FormatOutput()}"),
        };
    }

    private static async Task TryStopClusterAsync(ProcessRunner runner, string clusterDirectory, ILogger logger)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            await runner.RunAsync("pg_ctl", ["stop", "-D", clusterDirectory, "-m", "fast", "-w", "-t", "60"], "pg_ctl stop", timeout.Token, throwOnFailure: false);
        }
        catch (Exception ex) when (ex is LocalPostgresException or OperationCanceledException)
        {
            logger.LogWarning(ex, "Could not stop PostgreSQL in {ClusterDirectory} after a failed start", clusterDirectory);
        }
    }

    private static int ReadPortFromPidFile(string clusterDirectory)
    {
        // postmaster.pid: pid, data directory, start time, port, socket directory, listen address, shmem key, status.
        var pidFile = Path.Combine(clusterDirectory, "postmaster.pid");
        string[] lines;
        try
        {
            lines = File.ReadAllLines(pidFile);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new LocalPostgresException($"PostgreSQL in {clusterDirectory} is running but {pidFile} could not be read: {ex.Message}", ex);
        }

        if (lines.Length >= 4 && int.TryParse(lines[3].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port > 0)
        {
            return port;
        }

        throw new LocalPostgresException($"PostgreSQL in {clusterDirectory} is running but line 4 of {pidFile} holds no port.");
    }

    private static string ReadLogTail(string rootDirectory)
    {
        var logFile = Path.Combine(rootDirectory, LogFileName);
        try
        {
            if (!File.Exists(logFile))
            {
                return string.Empty;
            }

            var tail = File.ReadLines(logFile).TakeLast(30).ToList();
            return tail.Count == 0 ? string.Empty : $"{Environment.NewLine}Last lines of {logFile}:{Environment.NewLine}{string.Join(Environment.NewLine, tail)}";
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return string.Empty;
        }
    }

    private static string ShellQuote(string value) => "'" + value.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    /// <summary>Runs PostgreSQL's binaries, as the postgres system user when this process is root.</summary>
    private sealed class ProcessRunner(string binDirectory, string? runUserPath)
    {
        public string BinDirectory { get; } = binDirectory;

        public bool RunsAsSystemUser => runUserPath is not null;

        public async Task<ProcessResult> RunAsync(
            string tool,
            IReadOnlyList<string> arguments,
            string description,
            CancellationToken ct,
            bool throwOnFailure = true)
        {
            var executable = Path.Combine(BinDirectory, tool);
            string fileName;
            List<string> allArguments;
            if (runUserPath is not null)
            {
                fileName = runUserPath;
                allArguments = ["-u", SystemUser, "--", executable, .. arguments];
            }
            else
            {
                fileName = executable;
                allArguments = [.. arguments];
            }

            // "/" rather than our own working directory, which the postgres user may not be allowed to enter.
            var result = await RunRawAsync(fileName, allArguments, workingDirectory: "/", ct);
            if (throwOnFailure && result.ExitCode != 0)
            {
                throw new LocalPostgresException(
                    $"{description} failed (exit code {result.ExitCode}): {fileName} {string.Join(' ', allArguments)}{result.FormatOutput()}");
            }

            return result;
        }

        /// <summary>Runs a system tool (chown, chmod) as the current user and throws if it fails.</summary>
        public static async Task RunCheckedAsync(string fileName, IReadOnlyList<string> arguments, CancellationToken ct)
        {
            var result = await RunRawAsync(fileName, arguments, workingDirectory: "/", ct);
            if (result.ExitCode != 0)
            {
                throw new LocalPostgresException(
                    $"{fileName} {string.Join(' ', arguments)} failed (exit code {result.ExitCode}).{result.FormatOutput()}");
            }
        }

        public static async Task<ProcessResult> RunRawAsync(string fileName, IReadOnlyList<string> arguments, string workingDirectory, CancellationToken ct)
        {
            var startInfo = new ProcessStartInfo(fileName)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
                UseShellExecute = false,
                WorkingDirectory = workingDirectory,
            };
            foreach (var argument in arguments)
            {
                startInfo.ArgumentList.Add(argument);
            }

            using var process = new Process { StartInfo = startInfo };
            try
            {
                process.Start();
            }
            catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException)
            {
                throw new LocalPostgresException($"Could not run {fileName}: {ex.Message}", ex);
            }

            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync(ct);
            var stderr = process.StandardError.ReadToEndAsync(ct);
            try
            {
                await process.WaitForExitAsync(ct);
                return new ProcessResult(process.ExitCode, await stdout, await stderr);
            }
            catch (OperationCanceledException)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                    // Already exited.
                }

                throw;
            }
        }
    }

    private sealed record ProcessResult(int ExitCode, string StandardOutput, string StandardError)
    {
        public string FormatOutput()
        {
            var builder = new StringBuilder();
            if (!string.IsNullOrWhiteSpace(StandardOutput))
            {
                builder.AppendLine().Append("stdout:").AppendLine().Append(StandardOutput.TrimEnd());
            }

            if (!string.IsNullOrWhiteSpace(StandardError))
            {
                builder.AppendLine().Append("stderr:").AppendLine().Append(StandardError.TrimEnd());
            }

            return builder.ToString();
        }
    }

    /// <summary>An exclusive advisory lock on a file, held across processes while a cluster is set up.</summary>
    private sealed class FolderLock : IAsyncDisposable
    {
        private FileStream? _stream;

        private FolderLock(FileStream stream) => _stream = stream;

        public static async Task<FolderLock> AcquireAsync(string path, TimeSpan timeout, CancellationToken ct)
        {
            var waited = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    // FileShare.None takes an flock on Unix, which another process asking the same fails on.
                    return new FolderLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
                }
                catch (IOException) when (waited.Elapsed < timeout)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(200), ct);
                }
                catch (IOException ex)
                {
                    throw new LocalPostgresException($"Timed out after {timeout.TotalSeconds:0} s waiting for the lock {path} held by another process.", ex);
                }
            }
        }

        public ValueTask DisposeAsync()
        {
            var stream = Interlocked.Exchange(ref _stream, null);
            return stream?.DisposeAsync() ?? ValueTask.CompletedTask;
        }
    }
}

/// <summary>A step of starting or stopping a <see cref="LocalPostgresServer"/> failed; the message says which and why.</summary>
public sealed class LocalPostgresException : Exception
{
    /// <summary>Creates the exception with a default message.</summary>
    public LocalPostgresException()
        : base("Local PostgreSQL server operation failed.")
    {
    }

    /// <summary>Creates the exception with a message naming what failed.</summary>
    /// <param name="message">What failed, including any tool output.</param>
    public LocalPostgresException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    /// <param name="message">What failed, including any tool output.</param>
    /// <param name="innerException">The underlying error.</param>
    public LocalPostgresException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
