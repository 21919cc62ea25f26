using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Spine.Local.Network;

namespace Spine.Local.Postgres;

/// <summary>The server process of one cluster, through <c>pg_ctl</c>: start on a loopback port, status, crash-restart, stop.</summary>
internal sealed class PostgresServerControl(PostgresProcessRunner runner, PostgresDataFolder folder, ILogger logger)
{
    private static readonly IReadOnlyDictionary<string, string> _defaultSettings = new Dictionary<string, string>
    {
        ["max_connections"] = "200",
        ["shared_buffers"] = "128MB",
    };

    /// <summary>
    /// Starts the server listening on 127.0.0.1 only, on <paramref name="port"/> or, when it is 0, on a free port
    /// (picked again if someone takes it first). Returns the port.
    /// </summary>
    public async Task<int> StartAsync(int port, string socketDirectory, IReadOnlyDictionary<string, string>? serverSettings, CancellationToken ct)
    {
        var settings = new Dictionary<string, string>(_defaultSettings, StringComparer.Ordinal);
        foreach (var (name, value) in serverSettings ?? new Dictionary<string, string>())
        {
            settings[name] = value;
        }

        // A port picked as free can be taken by someone else before the postmaster binds it; pick again then.
        var attempts = port == 0 ? 3 : 1;
        for (var attempt = 1; ; attempt++)
        {
            var candidate = port != 0 ? port : LoopbackPorts.FreePort();

            // pg_ctl hands -o to /bin/sh, so every value is shell-quoted.
            var serverOptions = new StringBuilder()
                .Append("-p ").Append(candidate.ToString(CultureInfo.InvariantCulture))
                .Append(" -c listen_addresses=127.0.0.1")
                .Append(" -k ").Append(ShellQuote(socketDirectory));
            foreach (var (name, value) in settings)
            {
                serverOptions.Append(" -c ").Append(ShellQuote(name + "=" + value));
            }

            logger.LogInformation("Starting PostgreSQL from {ClusterDirectory} on 127.0.0.1:{Port}", folder.ClusterDirectory, candidate);
            var result = await runner.RunAsync(
                "pg_ctl",
                ["-D", folder.ClusterDirectory, "-l", folder.LogFile, "-w", "-t", "60", "-o", serverOptions.ToString(), "start"],
                "pg_ctl start",
                ct,
                throwOnFailure: false);
            if (result.ExitCode == 0)
            {
                return candidate;
            }

            if (attempt >= attempts)
            {
                throw new LocalPostgresException(
                    $"pg_ctl start failed for cluster {folder.ClusterDirectory} on port {candidate} (exit code {result.ExitCode}).{result.FormatOutput()}{folder.ReadLogTail()}");
            }

            logger.LogWarning("pg_ctl start on port {Port} failed, retrying on another port", candidate);
        }
    }

    /// <summary>True when a server runs from the cluster.</summary>
    public async Task<bool> IsRunningAsync(CancellationToken ct)
    {
        var result = await runner.RunAsync("pg_ctl", ["status", "-D", folder.ClusterDirectory], "pg_ctl status", ct, throwOnFailure: false);
        return result.ExitCode switch
        {
            0 => true,
            3 => false,
            _ => throw new LocalPostgresException(
                $"pg_ctl status failed for cluster {folder.ClusterDirectory} (exit code {result.ExitCode}); is the folder readable "
                + $"by the user running PostgreSQL?{result.FormatOutput()}"),
        };
    }

    /// <summary><c>pg_ctl restart -m immediate</c>: every connection drops without a checkpoint, as in a crash.</summary>
    public Task CrashRestartAsync(CancellationToken ct) =>
        runner.RunAsync("pg_ctl", ["-D", folder.ClusterDirectory, "-l", folder.LogFile, "-m", "immediate", "-w", "-t", "60", "restart"], "pg_ctl restart", ct);

    /// <summary>The arguments of <c>pg_ctl stop -m fast</c> for this cluster.</summary>
    public IReadOnlyList<string> StopArguments => ["stop", "-D", folder.ClusterDirectory, "-m", "fast", "-w", "-t", "60"];

    /// <summary>
    /// Stops the server, and deletes the folder when <paramref name="deleteFolder"/> is set, once the process
    /// <paramref name="processId"/> is gone however it ended, SIGKILL included. The watcher is a detached shell
    /// (its own session when <c>setsid</c> exists), so that killing that process's tree or group leaves it to work.
    /// </summary>
    public void StopWhenProcessExits(int processId, bool deleteFolder)
    {
        const string watcher = """
            pid=$1; root=$2; delete=$3; shift 3
            while kill -0 "$pid" 2>/dev/null; do sleep 1; done
            if [ -f "$root/pgdata/postmaster.pid" ]; then "$@"; fi
            if [ "$delete" = 1 ]; then rm -rf "$root"; fi
            """;
        const string detach = """
            if command -v setsid >/dev/null 2>&1; then
                setsid /bin/sh -c "$0" watcher "$@" </dev/null >/dev/null 2>&1 &
            else
                /bin/sh -c "$0" watcher "$@" </dev/null >/dev/null 2>&1 &
            fi
            """;
        var start = new System.Diagnostics.ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = "/",
        };
        foreach (var argument in (string[])["-c", detach, watcher, processId.ToString(CultureInfo.InvariantCulture), folder.RootDirectory, deleteFolder ? "1" : "0", .. runner.CommandLine("pg_ctl", StopArguments)])
        {
            start.ArgumentList.Add(argument);
        }

        using var process = System.Diagnostics.Process.Start(start) ?? throw new LocalPostgresException("Could not start /bin/sh to watch the process.");
        process.StandardInput.Close();
        process.WaitForExit();
    }

    /// <summary><c>pg_ctl stop -m fast</c>, if the server runs.</summary>
    public async Task StopAsync(CancellationToken ct)
    {
        if (await IsRunningAsync(ct))
        {
            logger.LogInformation("Stopping local PostgreSQL from {ClusterDirectory}", folder.ClusterDirectory);
            await runner.RunAsync("pg_ctl", StopArguments, "pg_ctl stop", ct);
        }
    }

    /// <summary>Stops the server after a failed start; logs rather than throws, so the start's own error is the one reported.</summary>
    public async Task TryStopAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            await runner.RunAsync("pg_ctl", StopArguments, "pg_ctl stop", timeout.Token, throwOnFailure: false);
        }
        catch (Exception ex) when (ex is LocalPostgresException or OperationCanceledException)
        {
            logger.LogWarning(ex, "Could not stop PostgreSQL in {ClusterDirectory} after a failed start", folder.ClusterDirectory);
        }
    }

    private static string ShellQuote(string value) => "'" + value.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
