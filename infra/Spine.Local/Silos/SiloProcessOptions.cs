using Spine.Local.Network;

namespace Spine.Local.Silos;

/// <summary>Settings of a <see cref="SiloProcess"/>.</summary>
public sealed record SiloProcessOptions
{
    /// <summary>The runtime connection string.</summary>
    public required string ConnectionString { get; init; }

    /// <summary>The journal key (<c>Spine:Audit:Key</c>, base64): every silo of a cluster signs with the same one.</summary>
    public required string AuditKey { get; init; }

    /// <summary>The cluster id.</summary>
    public required string ClusterId { get; init; }

    /// <summary>The service id. Default <c>spine</c>.</summary>
    public string ServiceId { get; init; } = "spine";

    /// <summary>The silo port.</summary>
    public required int SiloPort { get; init; }

    /// <summary>The gateway port.</summary>
    public required int GatewayPort { get; init; }

    /// <summary>The dashboard/health port.</summary>
    public required int DashboardPort { get; init; }

    /// <summary>Whether the silo serves the Orleans Dashboard (<c>Silo:Dashboard</c>); the health endpoint is always served. Default true.</summary>
    public bool Dashboard { get; init; } = true;

    /// <summary>The resume reminder period (how soon a run of a dead silo resumes). Default 2 s.</summary>
    public TimeSpan ResumeReminderPeriod { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Whether the silo registers the demo workflows and tools (<c>Silo:Demo</c>). Default false.</summary>
    public bool Demo { get; init; }

    /// <summary>The silo executable's <c>Spine.Silo.dll</c>; null finds it with <see cref="SiloExecutable.Locate"/>.</summary>
    public string? SiloAssembly { get; init; }

    /// <summary>Extra environment variables.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>A file that receives the process output.</summary>
    public string? LogFile { get; init; }

    /// <summary>Called with each output line.</summary>
    public Action<string>? OnOutput { get; init; }

    /// <summary>
    /// A silo of cluster <paramref name="clusterId"/> (also its service id, so that clusters sharing a database
    /// keep their reminders apart) on free loopback ports, with the demo on and the dashboard off: the set-up
    /// of process-level tests and benchmarks. Adjust the rest with <c>with { … }</c>.
    /// </summary>
    public static SiloProcessOptions OnFreePorts(string connectionString, string clusterId, string auditKey) => new()
    {
        AuditKey = auditKey,
        Demo = true,
        Dashboard = false,
        ConnectionString = connectionString,
        ClusterId = clusterId,
        ServiceId = clusterId,
        SiloPort = LoopbackPorts.FreePort(),
        GatewayPort = LoopbackPorts.FreePort(),
        DashboardPort = LoopbackPorts.FreePort(),
    };
}
