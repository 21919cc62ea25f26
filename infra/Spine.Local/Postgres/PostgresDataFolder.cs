using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Spine.Local.Postgres;

/// <summary>
/// The folder of one local cluster and its creation: the cluster (<c>pgdata</c>, made by initdb), the server
/// log, the Unix socket, and, when PostgreSQL runs as the <c>postgres</c> system user, ownership by that user.
/// </summary>
internal sealed class PostgresDataFolder
{
    private const string ClusterFolderName = "pgdata";
    private const string LogFileName = "postgres.log";
    private const string LockFileName = ".spine-local-postgres.lock";

    // Unix socket paths are limited to 107 bytes; leave room for "/.s.PGSQL.65535.lock".
    private const int MaxSocketDirectoryLength = 85;

    public PostgresDataFolder(string dataDirectory)
    {
        RootDirectory = Path.GetFullPath(dataDirectory);
        ClusterDirectory = Path.Combine(RootDirectory, ClusterFolderName);
        LogFile = Path.Combine(RootDirectory, LogFileName);
        LockFile = Path.Combine(RootDirectory, LockFileName);
    }

    /// <summary>The folder the caller named.</summary>
    public string RootDirectory { get; }

    /// <summary>The cluster (initdb's <c>-D</c>).</summary>
    public string ClusterDirectory { get; }

    /// <summary>The server log.</summary>
    public string LogFile { get; }

    /// <summary>The file locked while a process sets the cluster up.</summary>
    public string LockFile { get; }

    /// <summary>True once initdb has created the cluster.</summary>
    public bool HasCluster => File.Exists(Path.Combine(ClusterDirectory, "PG_VERSION"));

    /// <summary>Lets the system user walk down to the folder (a no-op when PostgreSQL runs as this user).</summary>
    public async Task MakeReachableAsync(PostgresProcessRunner runner, CancellationToken ct)
    {
        if (runner.RunsAsSystemUser)
        {
            await EnsureParentsTraversableAsync(RootDirectory, ct);
        }
    }

    /// <summary>Gives the folder to the system user, who writes the cluster, the log and the socket into it.</summary>
    public async Task MakeWritableAsync(PostgresProcessRunner runner, CancellationToken ct)
    {
        if (runner.RunsAsSystemUser)
        {
            await PostgresProcessRunner.RunCheckedAsync("chown", ["-R", PostgresProcessRunner.SystemUser + ":", RootDirectory], ct);
        }
    }

    /// <summary>Creates the cluster with initdb: trust authentication, user <c>postgres</c>, UTF-8.</summary>
    public async Task InitDbAsync(PostgresProcessRunner runner, ILogger logger, CancellationToken ct)
    {
        logger.LogInformation("Creating PostgreSQL cluster in {ClusterDirectory}", ClusterDirectory);

        // --no-locale keeps initdb independent of whatever LANG the machine has (an uninstalled locale makes it fail).
        await runner.RunAsync(
            "initdb",
            ["-D", ClusterDirectory, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"],
            "initdb",
            ct);
    }

    /// <summary>
    /// The folder for the Unix socket: this folder, or a short one under the temp folder when this one's path
    /// is too long for a socket. Returns whether the folder is one of its own, which the caller deletes at the end.
    /// </summary>
    public async Task<(string Directory, bool Owned)> SocketDirectoryAsync(PostgresProcessRunner runner, CancellationToken ct)
    {
        if (RootDirectory.Length <= MaxSocketDirectoryLength)
        {
            return (RootDirectory, false);
        }

        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(RootDirectory)))[..12];
        var socketDirectory = Path.Combine(Path.GetTempPath(), "spine-pg-" + hash);
        Directory.CreateDirectory(socketDirectory);
        if (runner.RunsAsSystemUser)
        {
            await PostgresProcessRunner.RunCheckedAsync("chown", [PostgresProcessRunner.SystemUser + ":", socketDirectory], ct);
            await EnsureParentsTraversableAsync(socketDirectory, ct);
        }

        return (socketDirectory, true);
    }

    /// <summary>The port of the running server, from line 4 of <c>postmaster.pid</c>.</summary>
    public int ReadPortFromPidFile()
    {
        // postmaster.pid: pid, data directory, start time, port, socket directory, listen address, shmem key, status.
        var pidFile = Path.Combine(ClusterDirectory, "postmaster.pid");
        string[] lines;
        try
        {
            lines = File.ReadAllLines(pidFile);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new LocalPostgresException($"PostgreSQL in {ClusterDirectory} is running but {pidFile} could not be read: {ex.Message}", ex);
        }

        if (lines.Length >= 4 && int.TryParse(lines[3].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port > 0)
        {
            return port;
        }

        throw new LocalPostgresException($"PostgreSQL in {ClusterDirectory} is running but line 4 of {pidFile} holds no port.");
    }

    /// <summary>The last lines of the server log, to append to an error message; empty when there is none.</summary>
    public string ReadLogTail()
    {
        try
        {
            if (!File.Exists(LogFile))
            {
                return string.Empty;
            }

            var tail = File.ReadLines(LogFile).TakeLast(30).ToList();
            return tail.Count == 0 ? string.Empty : $"{Environment.NewLine}Last lines of {LogFile}:{Environment.NewLine}{string.Join(Environment.NewLine, tail)}";
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return string.Empty;
        }
    }

    /// <summary>Deletes a folder, retrying briefly: right after a fast stop a backend may still be unlinking its temp files.</summary>
    public static async Task DeleteWithRetryAsync(string directory)
    {
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

    /// <summary>Deletes a folder if it can; logs when it cannot.</summary>
    public static void TryDelete(string directory, ILogger logger)
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
                await PostgresProcessRunner.RunCheckedAsync("chmod", ["o+x", parent], ct);
            }
        }
    }
}
