using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Orleans.Serialization;
using Orleans.Storage;
using Spine.Agents;
using Spine.Storage;

namespace Spine.Hosting;

/// <summary>Adds Spine to an Orleans silo: storage and reminders on PostgreSQL, the runtime, and the built-in workflows.</summary>
public static class SpineSiloBuilderExtensions
{
    /// <summary>The grain storage provider name Spine's grains use.</summary>
    public const string StorageName = "spine";

    // The raw ADO.NET provider; grains use StorageName, which scopes rows by grain type (TypeScopedGrainStorage).
    private const string InnerStorageName = "spine-adonet";

    /// <summary>
    /// Adds Spine to a silo: ADO.NET grain storage and reminders on PostgreSQL, the runtime services,
    /// and the built-in <see cref="AgentWorkflow"/>. Clustering is left to the host (ADO.NET in production,
    /// the test cluster's own membership in tests). The options are validated when the host starts: a bad
    /// value stops it with a message naming the setting.
    /// </summary>
    /// <param name="silo">The silo builder.</param>
    /// <param name="connectionString">The runtime connection string; it overrides <c>Spine:ConnectionString</c>.</param>
    /// <param name="configuration">The <c>Spine</c> configuration section, or null for defaults.</param>
    /// <param name="configure">Overrides applied after the configuration.</param>
    public static ISiloBuilder AddSpine(this ISiloBuilder silo, string connectionString, IConfiguration? configuration = null, Action<SpineOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(silo);
        ArgumentException.ThrowIfNullOrEmpty(connectionString);

        var options = silo.Services.AddOptions<SpineOptions>();
        if (configuration is not null)
        {
            options.Bind(configuration);
            silo.Services.AddOptions<Policies.PolicyOptions>().Bind(configuration.GetSection("Policies"));
            silo.Services.AddOptions<Budgets.BudgetOptions>().Bind(configuration.GetSection("Budgets"));
            silo.Services.AddOptions<Secrets.SecretOptions>().Bind(configuration.GetSection("Secrets"));
            silo.Services.AddOptions<RateLimits.RateLimitOptions>().Bind(configuration.GetSection("RateLimits"));
            silo.Services.AddOptions<Mcp.McpOptions>().Bind(configuration.GetSection("Mcp"));
            silo.Services.AddOptions<Slo.SloOptions>().Bind(configuration.GetSection("Slo"));
            silo.Services.AddOptions<Alerts.AlertOptions>().Bind(configuration.GetSection("Alerts"));
        }

        if (configure is not null)
        {
            options.Configure(configure);
        }

        options.PostConfigure(o => o.ConnectionString = connectionString);
        silo.Services.AddSpineRuntime();

        // The version-tolerant Orleans binary format, chosen on day one: the default JSON serializer embeds
        // CLR type names in every row, so renaming a state class would orphan the rows already written.
        silo.AddAdoNetGrainStorage(InnerStorageName, (OptionsBuilder<AdoNetGrainStorageOptions> o) => o.Configure<Serializer>((storage, serializer) =>
        {
            storage.Invariant = "Npgsql";
            storage.ConnectionString = connectionString;
            storage.GrainStorageSerializer = new OrleansGrainStorageSerializer(serializer);
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
            .Validate<IOptions<SpineOptions>>(
                (collection, spine) => spine.Value.ResumeReminderPeriod < collection.CollectionAge,
                "Spine:ResumeReminderPeriod must be shorter than Orleans' GrainCollectionOptions.CollectionAge.")
            .ValidateOnStart();

        // Every unfinished run holds a reminder of this period; Orleans refuses periods below its minimum.
        silo.Services.AddOptions<ReminderOptions>().Configure<IOptions<SpineOptions>>((reminders, spine) =>
        {
            if (reminders.MinimumReminderPeriod > spine.Value.ResumeReminderPeriod)
            {
                reminders.MinimumReminderPeriod = spine.Value.ResumeReminderPeriod;
            }
        });

        silo.Services.AddSpineWorkflow<AgentWorkflow, AgentInput, AgentOutput>();
        return silo;
    }
}
