using System.Net;
using Orleans.Configuration;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Orleans.Dashboard;
using Spine.Silo.Demo;
using Spine.Silo.LocalPostgres;
using Spine.Storage;

namespace Spine.Silo.Hosting;

/// <summary>Builds the silo web host: Orleans on PostgreSQL, the Dashboard, and the demo workflows when <c>Silo:Demo</c> is on.</summary>
public static class SpineSiloHost
{
    /// <summary>The login role the silo uses on the embedded PostgreSQL (member of <c>spine_runtime</c>).</summary>
    public const string RuntimeLogin = "spine_silo";

    /// <summary>
    /// Builds the host. When <c>Spine:ConnectionString</c> is empty, starts (or reuses) the embedded
    /// PostgreSQL under the project's data folder, applies the schema and connects as <see cref="RuntimeLogin"/>.
    /// </summary>
    public static async Task<WebApplication> BuildAsync(string[] args, Action<WebApplicationBuilder>? customize = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        customize?.Invoke(builder);
        var settings = builder.Configuration.GetSection(SiloSettings.SectionName).Get<SiloSettings>() ?? new SiloSettings();
        settings.Validate();

        using var startupLogs = LoggerFactory.Create(l => l.AddConsole());
        var logger = startupLogs.CreateLogger("Spine.Silo");
        var connectionString = builder.Configuration["Spine:ConnectionString"];
        LocalPostgresServer? local = null;
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            var dataDirectory = settings.LocalDataDirectory ?? Path.Combine(ProjectRoot(), ".pgdata");
            local = await LocalPostgresServer.StartAsync(new LocalPostgresOptions { DataDirectory = dataDirectory, Port = settings.LocalPostgresPort }, logger);
            await SchemaMigrator.ApplyAsync(local.ConnectionString, RuntimeLogin, settings.Demo);
            connectionString = new Npgsql.NpgsqlConnectionStringBuilder(local.ConnectionString) { Username = RuntimeLogin }.ConnectionString;
            logger.LogInformation(
                "No Spine:ConnectionString configured: using the embedded PostgreSQL on 127.0.0.1:{Port} with data in {DataDirectory} (schema applied, connecting as {Login})",
                local.Port, dataDirectory, RuntimeLogin);
        }

        builder.WebHost.UseUrls($"http://127.0.0.1:{settings.DashboardPort}");
        builder.Host.ConfigureHostOptions(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));
        builder.UseOrleans(silo =>
        {
            silo.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = settings.ClusterId;
                o.ServiceId = settings.ServiceId;
            });
            silo.ConfigureEndpoints(IPAddress.Parse(settings.AdvertisedAddress), settings.SiloPort, settings.GatewayPort, listenOnAnyHostAddress: false);
            silo.UseAdoNetClustering(o =>
            {
                o.Invariant = "Npgsql";
                o.ConnectionString = connectionString;
            });
            silo.AddSpine(connectionString, builder.Configuration.GetSection("Spine"));
            silo.AddActivityPropagation();
            if (settings.Dashboard)
            {
                silo.AddDashboard();
            }
        });
        if (settings.Demo)
        {
            builder.Services.AddSpineDemo(builder.Configuration);
        }
        AddTelemetry(builder);

        var app = builder.Build();
        if (settings.Dashboard)
        {
            app.MapOrleansDashboard("/dashboard");
            app.MapGet("/", () => Results.Redirect("/dashboard/"));
        }

        app.MapGet("/health", () => Results.Ok(new { status = "ok", cluster = settings.ClusterId }));
        if (local is not null)
        {
            app.Lifetime.ApplicationStopped.Register(() => local.StopAsync().GetAwaiter().GetResult());
        }

        return app;
    }

    /// <summary>
    /// Exports Orleans' traces and metrics over OTLP when an endpoint is configured (the standard
    /// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>); without one nothing is collected.
    /// </summary>
    private static void AddTelemetry(WebApplicationBuilder builder)
    {
        if (string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            return;
        }

        builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("spine-silo"))
            .WithTracing(t => t.AddSource("Spine", "Microsoft.Orleans.Application", "Microsoft.Orleans.Runtime").AddOtlpExporter())
            .WithMetrics(m => m.AddMeter("Spine", "Microsoft.Orleans").AddOtlpExporter());
    }

    /// <summary>The repository root (the folder holding Orleans.sln), or the working folder.</summary>
    public static string ProjectRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Orleans.sln")))
            {
                return dir.FullName;
            }
        }

        return Directory.GetCurrentDirectory();
    }
}
