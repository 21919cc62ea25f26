namespace Spine.Silo.Hosting;

/// <summary>Settings of the silo host (configuration section <c>Silo</c>), checked by <see cref="SiloSettingsValidator"/>.</summary>
internal sealed class SiloSettings
{
    /// <summary>The configuration section name.</summary>
    public const string SectionName = "Silo";

    /// <summary>The Orleans cluster id: silos and clients with the same id form one cluster. Default <c>spine</c>.</summary>
    public string ClusterId { get; set; } = "spine";

    /// <summary>The Orleans service id: keys reminders and grain state; keep it stable across deployments. Default <c>spine</c>.</summary>
    public string ServiceId { get; set; } = "spine";

    /// <summary>The address other silos and clients reach this silo at. Default <c>127.0.0.1</c>.</summary>
    public string AdvertisedAddress { get; set; } = "127.0.0.1";

    /// <summary>The silo-to-silo port. Default 11111.</summary>
    public int SiloPort { get; set; } = 11111;

    /// <summary>The client gateway port. Default 30000.</summary>
    public int GatewayPort { get; set; } = 30000;

    /// <summary>
    /// The address the HTTP port listens on: the Orleans Dashboard, the admin API and console, and the health endpoint.
    /// Default <c>127.0.0.1</c>: loopback only; expose it behind TLS termination.
    /// </summary>
    public string HttpAddress { get; set; } = "127.0.0.1";

    /// <summary>The HTTP port of the Orleans Dashboard (<c>/dashboard</c>), the admin API (<c>/api/v1</c>) and the health endpoint. Default 8080.</summary>
    public int DashboardPort { get; set; } = 8080;

    /// <summary>Serve the Orleans Dashboard (it costs the silo a few percent of CPU under load). Default true.</summary>
    public bool Dashboard { get; set; } = true;

    /// <summary>
    /// Registers the demo workflows, tools and scripted model (<c>Silo:Demo</c>, environment <c>Silo__Demo</c>) and,
    /// on the embedded PostgreSQL, creates their tables. Default false: a production silo runs only what its
    /// host registers. The <c>demo</c> command turns it on for the silos it starts.
    /// </summary>
    public bool Demo { get; set; }

    /// <summary>
    /// Where the embedded PostgreSQL keeps its data when <c>Spine:ConnectionString</c> is empty.
    /// Default: <c>.pgdata</c> at the repository root (or the working folder).
    /// </summary>
    public string? LocalDataDirectory { get; set; }

    /// <summary>The loopback port of the embedded PostgreSQL. Default 55432.</summary>
    public int LocalPostgresPort { get; set; } = 55432;
}
