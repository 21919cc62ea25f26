using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Spine.Local.Silos;

/// <summary>
/// A silo running as a separate operating-system process: what the demo and the crash tests kill with
/// SIGKILL and start again, exactly as a machine failure or a deploy would.
/// </summary>
public sealed partial class SiloProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StreamWriter? _log;

    private SiloProcess(Process process, SiloProcessOptions options, StreamWriter? log)
    {
        _process = process;
        Options = options;
        _log = log;
    }

    /// <summary>How it was started.</summary>
    public SiloProcessOptions Options { get; }

    /// <summary>The process id.</summary>
    public int ProcessId => _process.Id;

    /// <summary>True until the process exits.</summary>
    public bool IsRunning => !_process.HasExited;

    /// <summary>Starts <c>Spine.Silo.dll run</c> with the given settings as environment variables.</summary>
    public static SiloProcess Start(SiloProcessOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var dll = options.SiloAssembly ?? SiloExecutable.Locate();
        var start = new ProcessStartInfo(DotnetHost(), [dll, "run"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        var environment = new Dictionary<string, string>
        {
            ["Spine__ConnectionString"] = options.ConnectionString,
            ["Spine__Audit__Key"] = options.AuditKey,
            ["Spine__ResumeReminderPeriod"] = options.ResumeReminderPeriod.ToString("c"),
            ["Silo__ClusterId"] = options.ClusterId,
            ["Silo__ServiceId"] = options.ServiceId,
            ["Silo__SiloPort"] = options.SiloPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Silo__GatewayPort"] = options.GatewayPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Silo__DashboardPort"] = options.DashboardPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Logging__LogLevel__Default"] = "Warning",
            ["Logging__LogLevel__Orleans"] = "Warning",
            ["Logging__LogLevel__Spine"] = "Information",
            ["DOTNET_gcServer"] = "0",
            ["Silo__Demo"] = options.Demo ? "true" : "false",
            ["Silo__Dashboard"] = options.Dashboard ? "true" : "false",
        };
        foreach (var (key, value) in options.Environment)
        {
            environment[key] = value;
        }

        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }

        StreamWriter? log = options.LogFile is null ? null : new StreamWriter(options.LogFile, append: true) { AutoFlush = true };
        var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {dll}.");
        var silo = new SiloProcess(process, options, log);
        process.OutputDataReceived += (_, e) => silo.Forward(e.Data);
        process.ErrorDataReceived += (_, e) => silo.Forward(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return silo;
    }

    /// <summary>Waits until the silo answers on its health endpoint and accepts gateway connections.</summary>
    public async Task WaitReadyAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"The silo process exited with code {_process.ExitCode} before it was ready.");
            }

            try
            {
                using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{Options.DashboardPort}/health"), cancellationToken);
                if (response.IsSuccessStatusCode)
                {
                    using var gateway = new TcpClient();
                    await gateway.ConnectAsync("127.0.0.1", Options.GatewayPort, cancellationToken);
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or SocketException)
            {
            }

            await Task.Delay(200, cancellationToken);
        }

        throw new TimeoutException($"The silo process did not become ready within {timeout}.");
    }

    /// <summary>Kills the process with SIGKILL: no shutdown code runs, as in a machine failure.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        await _process.WaitForExitAsync();
    }

    /// <summary>Asks the process to shut down gracefully (SIGTERM) and waits for it; kills it after <paramref name="grace"/>.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (_process.HasExited)
        {
            return;
        }

        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
        {
            _ = SendSignal(_process.Id, 15);
        }

        using var timeout = new CancellationTokenSource(grace);
        try
        {
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            await KillAsync();
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
        if (_log is not null)
        {
            await _log.DisposeAsync();
        }
    }

    private void Forward(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_process)
        {
            _log?.WriteLine(line);
        }

        Options.OnOutput?.Invoke(line);
    }

    private static string DotnetHost()
    {
        var fromHost = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(fromHost) && File.Exists(fromHost))
        {
            return fromHost;
        }

        var current = Environment.ProcessPath;
        return current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet" ? current : "dotnet";
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SendSignal(int pid, int signal);
}
