using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Configuration;

namespace Spine.Client;

/// <summary>Registration of <see cref="ISpineClient"/> in another .NET service.</summary>
public static class SpineClientServiceCollectionExtensions
{
    /// <summary>
    /// Adds an Orleans client that finds the silos through ADO.NET clustering on PostgreSQL, and
    /// <see cref="ISpineClient"/> over it. The client connects when the host starts; when it cannot within
    /// <see cref="SpineClientOptions.ConnectTimeout"/>, the host's start throws <see cref="ClusterUnavailableException"/>
    /// or <see cref="Spine.Errors.StorageUnavailableException"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">An option is missing or out of range; the message names it.</exception>
    public static IServiceCollection AddSpineClient(this IServiceCollection services, Action<SpineClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new SpineClientOptions();
        configure(options);
        options.Validate();

        services.AddOptions<SpineClientOptions>().Configure(configure);
        services.AddOrleansClient(client =>
        {
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = options.ClusterId;
                o.ServiceId = options.ServiceId;
            });
            client.UseAdoNetClustering(o =>
            {
                o.Invariant = "Npgsql";
                o.ConnectionString = options.ConnectionString;
            });
            client.Configure<GatewayOptions>(o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(5));
            client.UseConnectionRetryFilter<ClusterConnectRetryFilter>();
        });
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<ISpineClient>(sp => new SpineClient(sp.GetRequiredService<IClusterClient>(), sp.GetRequiredService<IOptions<SpineClientOptions>>()));
        return services;
    }
}
