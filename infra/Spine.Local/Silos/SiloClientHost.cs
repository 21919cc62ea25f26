using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Spine.Client;

namespace Spine.Local.Silos;

/// <summary>A client host for silo processes: it finds them through their membership table, as another service would.</summary>
public static class SiloClientHost
{
    /// <summary>
    /// Starts a host with <see cref="ISpineClient"/> for the cluster of <paramref name="silo"/> (its connection
    /// string, cluster and service id), logging nothing.
    /// </summary>
    /// <param name="silo">The settings the cluster's silos were started with.</param>
    /// <param name="configure">Client settings applied after the cluster's own, e.g. <see cref="SpineClientOptions.WaitSlice"/>.</param>
    public static Task<IHost> StartAsync(SiloProcessOptions silo, Action<SpineClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(silo);
        return StartAsync(silo.ConnectionString, silo.ClusterId, silo.ServiceId, configure);
    }

    /// <summary>Starts a host with <see cref="ISpineClient"/> for the given cluster, logging nothing.</summary>
    /// <param name="connectionString">The runtime connection string of the cluster's database.</param>
    /// <param name="clusterId">The cluster id.</param>
    /// <param name="serviceId">The service id.</param>
    /// <param name="configure">Client settings applied after these, e.g. <see cref="SpineClientOptions.WaitSlice"/>.</param>
    public static async Task<IHost> StartAsync(string connectionString, string clusterId, string serviceId, Action<SpineClientOptions>? configure = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
        builder.Logging.ClearProviders();
        builder.Services.AddSpineClient(o =>
        {
            o.ConnectionString = connectionString;
            o.ClusterId = clusterId;
            o.ServiceId = serviceId;
            configure?.Invoke(o);
        });
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }
}
