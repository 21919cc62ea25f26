using System.Net;
using Orleans.Configuration;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Orleans.Dashboard;
using Microsoft.Extensions.Options;
using Spine.Hosting;
using Spine.Local;
using Spine.Local.Postgres;
using Spine.Silo.Admin;
using Spine.Silo.WebConsole;
using Spine.Silo.Demo;

namespace Spine.Silo.Hosting;

/// <summary>Builds the silo web host: Orleans on PostgreSQL, the Dashboard, and the demo workflows when <c>Silo:Demo</c> is on.</summary>
internal static class SpineSiloHost
{
    /// <summary>
    /// Builds the host. When <c>Spine:ConnectionString</c> is empty, starts (or reuses) the embedded
    /// PostgreSQL under the project's data folder, applies the schema and connects as
    /// <see cref="SpineDatabaseSetup.RuntimeLogin"/>. Settings out of range stop it with a message naming them.
    /// </summary>
    public static async Task<WebApplication> BuildAsync(string[] args, Action<WebApplicationBuilder>? customize = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        customize?.Invoke(builder);
        // Bound once and checked here rather than on start: the ports and the demo switch shape the host being built.
        var settings = builder.Configuration.GetSection(SiloSettings.SectionName).Get<SiloSettings>() ?? new SiloSettings();
        if (new SiloSettingsValidator().Validate(Options.DefaultName, settings) is { Failed: true } invalid)
        {
            throw new OptionsValidationException(Options.DefaultName, typeof(SiloSettings), invalid.Failures);
        }

        using var startupLogs = LoggerFactory.Create(l => l.AddConsole());
        var logger = startupLogs.CreateLogger("Spine.Silo");
        var connectionString = builder.Configuration["Spine:ConnectionString"];
        LocalPostgresServer? local = null;
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            var dataDirectory = settings.LocalDataDirectory ?? Path.Combine(RepositoryRoot.Find(), ".pgdata");
            local = await LocalPostgresServer.StartAsync(new LocalPostgresOptions { DataDirectory = dataDirectory, Port = settings.LocalPostgresPort }, logger);
            connectionString = await SpineDatabaseSetup.ApplySchemaAsync(local.ConnectionString, settings.Demo);
            if (string.IsNullOrWhiteSpace(builder.Configuration["Spine:Audit:Key"]) && string.IsNullOrWhiteSpace(builder.Configuration["Spine:Audit:KeyFile"]))
            {
                // A local set-up signs its journal with a key file of its own, beside (never inside) the data folder.
                builder.Configuration["Spine:Audit:KeyFile"] = LocalAuditKey.EnsureFile(dataDirectory);
            }
            logger.LogInformation(
                "No Spine:ConnectionString configured: using the embedded PostgreSQL on 127.0.0.1:{Port} with data in {DataDirectory} (schema applied, connecting as {Login})",
                local.Port, dataDirectory, SpineDatabaseSetup.RuntimeLogin);
        }

        // The console's component assets (FluentUI, Plotly) come from their packages: a build (not a publish, which
        // copies them into wwwroot) serves them through the build's static web assets manifest in any environment.
        builder.WebHost.UseStaticWebAssets();
        builder.WebHost.UseUrls($"http://{settings.HttpAddress}:{settings.DashboardPort}");
        var admin = builder.Configuration.GetValue(AdminOptions.SectionName + ":" + nameof(AdminOptions.Enabled), true);

        // Off loopback the dashboard (logs, grain state) is for operators only, which needs the admin API's keys.
        var exposed = !IPAddress.IsLoopback(IPAddress.Parse(settings.HttpAddress));
        if (exposed && settings.Dashboard && !admin)
        {
            throw new OptionsValidationException(Options.DefaultName, typeof(SiloSettings),
                [$"Silo:HttpAddress is {settings.HttpAddress}, not loopback: the dashboard then needs an operator's key, so Silo:Admin:Enabled must be true (or Silo:Dashboard false)."]);
        }
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
        if (admin)
        {
            builder.Services.AddSpineAdmin(builder.Configuration);
            builder.Services.AddSpineConsole(ConsoleHosting.ApiBaseAddress(settings.HttpAddress, settings.DashboardPort), exposed);
        }

        AddTelemetry(builder);

        var app = builder.Build();
        if (settings.Dashboard)
        {
            var dashboard = app.MapOrleansDashboard("/dashboard");
            if (exposed)
            {
                dashboard.RequireAuthorization(AdminRoles.DashboardPolicy);
            }
        }

        if (admin)
        {
            app.UseSpineAdmin(exposed);
            app.UseSpineConsole();
        }

        if (admin || settings.Dashboard)
        {
            app.MapGet("/", () => Results.Redirect(admin ? "/console" : "/dashboard/"));
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
            .WithTracing(t => t.AddSource("Spine", "Microsoft.Orleans.Application", "Microsoft.Orleans.Runtime", "Npgsql").AddOtlpExporter())
            .WithMetrics(m => m.AddMeter("Spine", "Microsoft.Orleans").AddOtlpExporter());
    }
}
