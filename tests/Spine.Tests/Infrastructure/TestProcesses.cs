using Microsoft.Extensions.Hosting;
using Spine.Local.Silos;

namespace Spine.Tests.Infrastructure;

/// <summary>Silo processes and client hosts for process-level tests: one way to set up each.</summary>
public static class TestProcesses
{
    /// <summary>Options for a silo process on fresh loopback ports, with the dashboard off.</summary>
    public static SiloProcessOptions Silo(string connectionString, string cluster, bool demo = true, string? logFile = null, TimeSpan? resumeReminderPeriod = null) =>
        SiloProcessOptions.OnFreePorts(connectionString, cluster, TestAudit.Key) with
        {
            Demo = demo,
            LogFile = logFile,
            ResumeReminderPeriod = resumeReminderPeriod ?? TimeSpan.FromSeconds(2),
            Environment = new Dictionary<string, string> { [TestSpine.SharedDatabaseVariable] = TestSpine.SharedDatabaseValue },
        };

    /// <summary>Starts a client host that finds the cluster through its membership table, as another service would.</summary>
    public static Task<IHost> StartClientAsync(string connectionString, string cluster) =>
        SiloClientHost.StartAsync(connectionString, cluster, cluster, o => o.WaitSlice = TimeSpan.FromSeconds(5));

    /// <summary>Stops and disposes a client host started by <see cref="StartClientAsync"/>.</summary>
    public static async Task StopClientAsync(IHost? host)
    {
        if (host is not null)
        {
            await host.StopAsync();
            host.Dispose();
        }
    }
}
