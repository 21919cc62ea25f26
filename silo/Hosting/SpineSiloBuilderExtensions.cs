using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Orleans.Serialization;
using Orleans.Storage;
using Spine.Silo.Storage;
using Spine.Agents;
using Spine.Hosting;

namespace Spine.Silo.Hosting;

/// <summary>The silo's composition root for Spine: storage, reminders and the runtime.</summary>
public static class SpineSiloBuilderExtensions
{
    /// <summary>The grain storage provider name Spine's grains use.</summary>
    public const string StorageName = "spine";

    // The raw ADO.NET provider; grains use StorageName, which scopes rows by grain type (TypeScopedGrainStorage).
    private const string InnerStorageName = "spine-adonet";

    /// <summary>
    /// Adds Spine to a silo: ADO.NET grain storage and reminders on PostgreSQL, the runtime services,
    /// and the built-in <see cref="AgentWorkflow"/>. Clustering is left to the host (ADO.NET in production,
    /// the test cluster's own membership in tests).
    /// </summary>
    /// <param name="silo">The silo builder.</param>
    /// <param name="connectionString">The runtime connection string.</param>
    /// <param name="configuration">The <c>Spine</c> configuration section, or null for defaults.</param>
    /// <param name="configure">Overrides applied after the configuration.</param>
    public static ISiloBuilder AddSpine(this ISiloBuilder silo, string connectionString, IConfiguration? configuration = null, Action<SpineOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(silo);
        ArgumentException.ThrowIfNullOrEmpty(connectionString);

        var options = new SpineOptions();
        configuration?.Bind(options);
        configure?.Invoke(options);
        options.ConnectionString = connectionString;
        options.Validate();

        silo.Services.AddSpineRuntime(o =>
        {
            configuration?.Bind(o);
            configure?.Invoke(o);
            o.ConnectionString = connectionString;
        });

        // The version-tolerant Orleans binary format, chosen on day one: the default JSON serializer embeds
        // CLR type names in every row, so renaming a state class would orphan the rows already written.
        silo.AddAdoNetGrainStorage(InnerStorageName, (OptionsBuilder<AdoNetGrainStorageOptions> o) => o.Configure<Serializer>((options, serializer) =>
        {
            options.Invariant = "Npgsql";
            options.ConnectionString = connectionString;
            options.GrainStorageSerializer = new OrleansGrainStorageSerializer(serializer);
        }));
        silo.Services.AddKeyedSingleton<IGrainStorage>(StorageName, (services, _) =>
            new TypeScopedGrainStorage(services.GetRequiredKeyedService<IGrainStorage>(InnerStorageName)));
        silo.UseAdoNetReminderService(o =>
        {
            o.Invariant = "Npgsql";
            o.ConnectionString = connectionString;
        });

        // The sweep period bounds how late a dead silo's runs resume; it must come well inside the idle
        // collection age, so that nothing the sweep keeps track of is collected between two sweeps.
        silo.Services.AddOptions<GrainCollectionOptions>()
            .Validate(o => options.ResumeReminderPeriod < o.CollectionAge,
                $"Spine:ResumeReminderPeriod ({options.ResumeReminderPeriod}) must be shorter than Orleans' GrainCollectionOptions.CollectionAge.")
            .ValidateOnStart();

        // Every unfinished run holds a reminder of this period; Orleans refuses periods below its minimum.
        silo.Configure<ReminderOptions>(o =>
        {
            if (o.MinimumReminderPeriod > options.ResumeReminderPeriod)
            {
                o.MinimumReminderPeriod = options.ResumeReminderPeriod;
            }
        });

        silo.Services.AddSpineWorkflow<AgentWorkflow, AgentInput, AgentOutput>();
        return silo;
    }
}
