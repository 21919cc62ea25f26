using System.Diagnostics;
using System.Text;

namespace Spine.Local.Postgres;

/// <summary>
/// Runs PostgreSQL's binaries, as the <c>postgres</c> system user (through <c>runuser -u postgres --</c>) when
/// this process is root: initdb and postgres refuse to run as root.
/// </summary>
internal sealed class PostgresProcessRunner
{
    /// <summary>The system user PostgreSQL runs as when this process is root.</summary>
    public const string SystemUser = "postgres";

    private readonly string? _runUserPath;

    private PostgresProcessRunner(string binDirectory, string? runUserPath)
    {
        BinDirectory = binDirectory;
        _runUserPath = runUserPath;
    }

    /// <summary>The folder holding the binaries.</summary>
    public string BinDirectory { get; }

    /// <summary>True when the binaries run as <see cref="SystemUser"/> rather than as this process's user.</summary>
    public bool RunsAsSystemUser => _runUserPath is not null;

    /// <summary>A runner for the binaries in <paramref name="binDirectory"/>, as the system user when this process is root.</summary>
    public static async Task<PostgresProcessRunner> CreateAsync(string binDirectory, CancellationToken ct) =>
        new(binDirectory, await IsRootAsync(ct) ? await FindRunUserAsync(ct) : null);

    /// <summary>The command line that runs <paramref name="tool"/> from <see cref="BinDirectory"/> as the right user.</summary>
    public IReadOnlyList<string> CommandLine(string tool, IReadOnlyList<string> arguments)
    {
        var executable = Path.Combine(BinDirectory, tool);
        return _runUserPath is not null ? [_runUserPath, "-u", SystemUser, "--", executable, .. arguments] : [executable, .. arguments];
    }

    /// <summary>Runs <paramref name="tool"/> from <see cref="BinDirectory"/>; throws when it fails unless told not to.</summary>
    public async Task<ProcessResult> RunAsync(
        string tool,
        IReadOnlyList<string> arguments,
        string description,
        CancellationToken ct,
        bool throwOnFailure = true)
    {
        var commandLine = CommandLine(tool, arguments);
        var fileName = commandLine[0];
        var allArguments = commandLine.Skip(1).ToList();

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

    private static async Task<ProcessResult> RunRawAsync(string fileName, IReadOnlyList<string> arguments, string workingDirectory, CancellationToken ct)
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

    private static async Task<bool> IsRootAsync(CancellationToken ct)
    {
        if (Environment.UserName == "root")
        {
            return true;
        }

        var result = await RunRawAsync("id", ["-u"], workingDirectory: "/", ct);
        return result.ExitCode == 0 && result.StandardOutput.Trim() == "0";
    }

    private static async Task<string> FindRunUserAsync(CancellationToken ct)
    {
        var runUser = new[] { "/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser", "/bin/runuser" }.FirstOrDefault(File.Exists)
            ?? throw new LocalPostgresException(
                "Running as root, and initdb refuses to run as root, but `runuser` (util-linux) was not found to run it as the "
                + $"'{SystemUser}' user. Install util-linux or run as a non-root user.");

        var user = await RunRawAsync("id", ["-u", SystemUser], workingDirectory: "/", ct);
        if (user.ExitCode != 0)
        {
            throw new LocalPostgresException(
                $"Running as root, and initdb refuses to run as root, but there is no '{SystemUser}' system user to run it as. "
                + "`apt-get install postgresql` creates it; otherwise create the user or run as a non-root user.");
        }

        return runUser;
    }
}

/// <summary>The exit code and output of a finished process.</summary>
internal sealed record ProcessResult(int ExitCode, string StandardOutput, string StandardError)
{
    /// <summary>The output as lines to append to an error message; empty when there was none.</summary>
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
