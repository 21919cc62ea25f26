using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;
using Spine.Client;

namespace Spine.Silo.Admin;

/// <summary>Registration of the admin HTTP API on the silo's web host.</summary>
internal static class AdminHosting
{
    /// <summary>
    /// Adds API-key authentication, the role policies, problem responses, the OpenAPI document and an
    /// <see cref="ISpineClient"/> over the silo's own grain factory (every call names its actor).
    /// </summary>
    public static IServiceCollection AddSpineAdmin(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<AdminOptions>().Bind(configuration.GetSection(AdminOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<AdminOptions>, AdminOptionsValidator>();
        services.AddSingleton<ApiKeys>();
        services.AddSingleton<ISpineClient>(sp => new SpineClient(sp.GetRequiredService<IGrainFactory>()));
        services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        // The API takes keys only (a browser's cookie would let another site's page post to it); the dashboard, off
        // loopback, also takes the console's sign-in.
        const string Key = ApiKeyAuthenticationHandler.SchemeName;
        services.AddAuthorizationBuilder()
            .AddPolicy(AdminRoles.ReadPolicy, p => p.AddAuthenticationSchemes(Key).RequireAuthenticatedUser().RequireRole(AdminRoles.Viewer, AdminRoles.Approver, AdminRoles.Operator))
            .AddPolicy(AdminRoles.ApprovePolicy, p => p.AddAuthenticationSchemes(Key).RequireAuthenticatedUser().RequireRole(AdminRoles.Approver))
            .AddPolicy(AdminRoles.OperatePolicy, p => p.AddAuthenticationSchemes(Key).RequireAuthenticatedUser().RequireRole(AdminRoles.Operator))
            .AddPolicy(AdminRoles.DashboardPolicy, p => p.AddAuthenticationSchemes(Key, WebConsole.ConsoleHosting.Scheme).RequireAuthenticatedUser().RequireRole(AdminRoles.Operator));
        services.AddProblemDetails();
        services.ConfigureHttpJsonOptions(o => o.SerializerOptions.Converters.Add(new JsonStringEnumConverter()));
        services.AddOpenApi("v1", o => o.AddDocumentTransformer((document, _, _) =>
        {
            document.Info.Title = "Spine admin API";
            document.Info.Description = "Runs, approvals, the dead-letter queue, breakers, budgets, policies, SLOs and the audit of a Spine cluster. "
                + "Send an API key as 'Authorization: Bearer <key>'.";
            return Task.CompletedTask;
        }));
        return services;
    }

    /// <summary>
    /// Maps the API under <c>/api/v1</c> and its OpenAPI document at <c>/api/openapi/v1.json</c> (for anyone on loopback,
    /// for a key with a read role when <paramref name="exposed"/>).
    /// </summary>
    public static WebApplication UseSpineAdmin(this WebApplication app, bool exposed)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.UseStatusCodePages();
        app.UseAuthentication();
        app.UseAuthorization();
        var document = app.MapOpenApi("/api/openapi/{documentName}.json");
        if (exposed)
        {
            document.RequireAuthorization(AdminRoles.ReadPolicy);
        }

        app.MapSpineAdminApi();
        return app;
    }
}
