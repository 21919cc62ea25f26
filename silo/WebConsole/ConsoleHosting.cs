using System.Net;
using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.Extensions.Options;
using Microsoft.AspNetCore.Mvc;
using Microsoft.FluentUI.AspNetCore.Components;
using Spine.Silo.Admin;

namespace Spine.Silo.WebConsole;

/// <summary>
/// The web console on the silo (<c>/console</c>): Blazor server components with the FluentUI components and Plotly
/// charts, signed in with an admin API key (kept in an encrypted cookie), calling the admin API with it.
/// </summary>
internal static class ConsoleHosting
{
    /// <summary>The console's cookie scheme.</summary>
    public const string Scheme = "SpineConsole";

    /// <summary>The default scheme: the API key when a request carries one, else the console's cookie.</summary>
    public const string SelectScheme = "Spine";

    /// <summary>The policy of every console page: a signed-in user.</summary>
    public const string Policy = "spine.console";

    /// <summary>The claim holding the user's API key, for the console's calls to the API.</summary>
    public const string KeyClaim = "spine:key";

    /// <summary>The rate limit of sign-in attempts, per client address.</summary>
    public const string SignInLimit = "spine.sign-in";

    /// <param name="services">The silo's services.</param>
    /// <param name="apiBaseAddress">Where the console reaches this silo's admin API.</param>
    /// <param name="exposed">The HTTP port listens off loopback: the cookie is sent over HTTPS only (TLS in front).</param>
    public static IServiceCollection AddSpineConsole(this IServiceCollection services, string apiBaseAddress, bool exposed)
    {
        services.AddRazorComponents().AddInteractiveServerComponents();
        services.AddFluentUIComponents();
        services.AddCascadingAuthenticationState();

        // One key ring for the cluster, in its database, under one application name: a cookie or token one silo
        // issued is read by every silo and after a restart.
        services.AddDataProtection().SetApplicationName("Spine");
        services.AddSingleton<IConfigureOptions<KeyManagementOptions>>(sp =>
            new ConfigureOptions<KeyManagementOptions>(o => o.XmlRepository = new PostgresXmlRepository(sp.GetRequiredService<Spine.Storage.SpineDatabase>())));

        // A request that presents a key (Bearer or X-Spine-Key) is the API's; the rest is the console's (its cookie,
        // the circuit's websocket). Any other Authorization header (a proxy's Basic) leaves the cookie in charge.
        services.AddAuthentication(o => o.DefaultScheme = SelectScheme)
            .AddPolicyScheme(SelectScheme, "Spine: key or console sign-in", o => o.ForwardDefaultSelector = http =>
                http.Request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
                || http.Request.Headers.ContainsKey(ApiKeyAuthenticationHandler.KeyHeader)
                    ? ApiKeyAuthenticationHandler.SchemeName
                    : Scheme)
            .AddCookie(Scheme, o =>
            {
                o.LoginPath = "/console/sign-in";
                o.LogoutPath = "/console/sign-out";
                o.AccessDeniedPath = "/console/sign-in?denied=1";
                o.Cookie.Name = "spine.console";
                o.Cookie.HttpOnly = true;
                o.Cookie.SameSite = SameSiteMode.Strict;
                o.Cookie.SecurePolicy = exposed ? CookieSecurePolicy.Always : CookieSecurePolicy.SameAsRequest;
                o.ExpireTimeSpan = TimeSpan.FromHours(8);
                o.SlidingExpiration = true;

                // Every request checks the key again: a key taken out of Silo:Admin:Keys signs its cookies out, and
                // changed roles take effect at once.
                o.Events.OnValidatePrincipal = context =>
                {
                    var keys = context.HttpContext.RequestServices.GetRequiredService<ApiKeys>();
                    if (context.Principal?.FindFirstValue(KeyClaim) is not { } key || keys.Find(key) is not { } actor)
                    {
                        context.RejectPrincipal();
                        return context.HttpContext.SignOutAsync(Scheme);
                    }

                    var roles = context.Principal.FindAll(ClaimTypes.Role).Select(c => c.Value).Order(StringComparer.Ordinal);
                    if (!roles.SequenceEqual(actor.Roles.Order(StringComparer.Ordinal)) || context.Principal.FindFirstValue(ClaimTypes.NameIdentifier) != actor.Id)
                    {
                        context.ReplacePrincipal(PrincipalOf(actor, key));
                        context.ShouldRenew = true;
                    }

                    return Task.CompletedTask;
                };
            });
        services.AddAuthorizationBuilder()
            .AddPolicy(Policy, p => p.AddAuthenticationSchemes(Scheme).RequireAuthenticatedUser());
        services.AddRateLimiter(o =>
        {
            o.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            o.AddPolicy(SignInLimit, http => System.Threading.RateLimiting.RateLimitPartition.GetFixedWindowLimiter(
                http.Connection.RemoteIpAddress?.ToString() ?? "?",
                _ => new System.Threading.RateLimiting.FixedWindowRateLimiterOptions { PermitLimit = 10, Window = TimeSpan.FromMinutes(1) }));
        });
        services.AddHttpClient<ConsoleApi>(c => c.BaseAddress = new Uri(apiBaseAddress));
        return services;
    }

    private static ClaimsPrincipal PrincipalOf(Spine.Identity.SpineActor actor, string key)
    {
        var principal = ApiKeyAuthenticationHandler.PrincipalOf(actor, Scheme);
        ((ClaimsIdentity)principal.Identity!).AddClaim(new Claim(KeyClaim, key));
        return principal;
    }

    /// <summary>The address the console calls the API at: the silo's own HTTP port, on loopback when it listens on every address.</summary>
    public static string ApiBaseAddress(string httpAddress, int port)
    {
        var address = IPAddress.Parse(httpAddress);
        var host = address.Equals(IPAddress.Any) ? "127.0.0.1" : address.Equals(IPAddress.IPv6Any) ? "[::1]" : address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
        return $"http://{host}:{port}/";
    }

    public static WebApplication UseSpineConsole(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.UseAntiforgery();
        app.MapStaticAssets();
        app.MapRazorComponents<App>().AddInteractiveServerRenderMode();

        // Sign-in takes a key the silo knows; the cookie carries its identity, roles and the key (encrypted). At most 10
        // tries a minute from one address, and every refusal is logged.
        app.UseRateLimiter();
        app.MapPost("/console/sign-in", async (HttpContext http, [FromForm] string? key, [FromForm] string? returnUrl, ApiKeys keys, ILogger<ConsoleApi> log) =>
        {
            if (string.IsNullOrWhiteSpace(key) || keys.Find(key.Trim()) is not { } actor)
            {
                log.LogWarning("Console sign-in refused from {Address}: the key is not one this silo knows", http.Connection.RemoteIpAddress);
                return Results.Redirect("/console/sign-in?failed=1");
            }

            await http.SignInAsync(Scheme, PrincipalOf(actor, key.Trim()));
            return Results.LocalRedirect(returnUrl is { Length: > 0 } url && (url.StartsWith("/console", StringComparison.Ordinal) || url.StartsWith("/dashboard", StringComparison.Ordinal)) ? url : "/console");
        }).RequireRateLimiting(SignInLimit);
        app.MapPost("/console/sign-out", async (HttpContext http) =>
        {
            await http.SignOutAsync(Scheme);
            return Results.Redirect("/console/sign-in");
        }).WithMetadata(new Microsoft.AspNetCore.Antiforgery.RequireAntiforgeryTokenAttribute());
        return app;
    }
}
