using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Npgsql;

namespace Spine.Bench;

/// <summary>
/// The yardstick: pgbench doing single-row INSERTs of a ~200-byte row into a scratch table, on the same
/// server as the Spine measurement, so that <c>ratio</c> says how close Spine's steps come to what this
/// machine's PostgreSQL can commit.
/// </summary>
public static partial class PgBench
{
    private const string Table = "spine_bench_pgbench";

    // id (8) + client (4) + payload (1 + 170) + the 24-byte tuple header: about 200 bytes a row.
    private const string Script = $"INSERT INTO {Table} (client, payload) VALUES (:client_id, repeat('x', 170));\n";

    /// <summary>Runs pgbench and returns its tps (without initial connection time).</summary>
    public static async Task<double> RunAsync(BenchEnvironment environment, int clients, int threads, int seconds)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var pgbench = FindPgBench(environment.PgBinDirectory);
        var target = new NpgsqlConnectionStringBuilder(environment.OwnerConnectionString);
        await ExecuteAsync(environment.OwnerConnectionString, $"DROP TABLE IF EXISTS {Table}; CREATE TABLE {Table} (id bigserial PRIMARY KEY, client integer NOT NULL, payload text NOT NULL)");
        var scriptFile = Path.Combine(Path.GetTempPath(), $"spine-bench-insert-{Environment.ProcessId}.sql");
        await File.WriteAllTextAsync(scriptFile, Script);
        try
        {
            await environment.CheckpointAsync();
            var host = target.Host is { Length: > 0 } h && !h.StartsWith('/') ? h : "127.0.0.1";
            var arguments = new List<string>
            {
                "-h", host, "-p", target.Port.ToString(CultureInfo.InvariantCulture), "-U", target.Username ?? "postgres",
                "-n", "-c", clients.ToString(CultureInfo.InvariantCulture), "-j", threads.ToString(CultureInfo.InvariantCulture),
                "-T", seconds.ToString(CultureInfo.InvariantCulture), "-f", scriptFile, target.Database ?? "postgres",
            };
            Progress.Say($"pgbench: {pgbench} {string.Join(' ', arguments)}");
            var start = new ProcessStartInfo(pgbench, arguments)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            if (!string.IsNullOrEmpty(target.Password))
            {
                start.Environment["PGPASSWORD"] = target.Password;
            }

            var postgresBefore = environment.PostgresCpu?.Seconds() ?? double.NaN;
            var childrenBefore = PostgresCpu.ReapedChildrenSeconds();
            var machineBefore = PhaseProbe.MachineCpu();
            var benchBefore = Process.GetCurrentProcess().TotalProcessorTime;
            using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {pgbench}.");
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync();
            var output = await stdout;
            var errors = await stderr;
            var postgresSeconds = (environment.PostgresCpu?.Seconds() ?? double.NaN) - postgresBefore;
            var pgbenchSeconds = PostgresCpu.ReapedChildrenSeconds() - childrenBefore;
            var machineBusyCores = PhaseProbe.MachineBusyCoresSince(machineBefore);
            var benchSeconds = (Process.GetCurrentProcess().TotalProcessorTime - benchBefore).TotalSeconds;
            Progress.Say(string.Create(
                CultureInfo.InvariantCulture,
                $"pgbench: CPU over its {seconds} s: PostgreSQL {postgresSeconds / seconds:F2} cores, pgbench itself {pgbenchSeconds / seconds:F2} cores, the idle silo {benchSeconds / seconds:F2} cores, whole machine {machineBusyCores:F2} cores"));
            PhaseProbe.WarnIfMachineShared("pgbench", machineBusyCores - ((postgresSeconds + pgbenchSeconds + benchSeconds) / seconds));
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"pgbench exited with {process.ExitCode}:\n{output}\n{errors}");
            }

            foreach (var line in output.Split('\n').Where(l => l.StartsWith("number of", StringComparison.Ordinal) || l.StartsWith("latency", StringComparison.Ordinal)))
            {
                Progress.Say($"pgbench: {line.Trim()}");
            }

            var match = TpsLine().Match(output);
            return match.Success
                ? double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture)
                : throw new InvalidOperationException($"No 'tps = ... (without initial connection time)' line in pgbench's output:\n{output}");
        }
        finally
        {
            File.Delete(scriptFile);
            await ExecuteAsync(environment.OwnerConnectionString, $"DROP TABLE IF EXISTS {Table}");
        }
    }

    private static string FindPgBench(string? binDirectory)
    {
        var candidates = new List<string>();
        if (binDirectory is not null)
        {
            candidates.Add(Path.Combine(binDirectory, "pgbench"));
        }

        if (Directory.Exists("/usr/lib/postgresql"))
        {
            candidates.AddRange(Directory.GetDirectories("/usr/lib/postgresql").OrderDescending(StringComparer.Ordinal).Select(d => Path.Combine(d, "bin", "pgbench")));
        }

        candidates.AddRange((Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Select(d => Path.Combine(d, "pgbench")));
        return candidates.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("pgbench was not found: set SPINE_PG_BIN to the folder holding PostgreSQL's client binaries.");
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    // PostgreSQL 14+ prints "tps = N (without initial connection time)"; older ones "(excluding connections establishing)".
    [GeneratedRegex(@"tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)")]
    private static partial Regex TpsLine();
}
