using System.Net;
using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
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

    public static IServiceCollection AddSpineConsole(this IServiceCollection services, string apiBaseAddress)
    {
        services.AddRazorComponents().AddInteractiveServerComponents();
        services.AddFluentUIComponents();
        services.AddCascadingAuthenticationState();
        // A request names its key in a header or is the console's (its cookie, and the circuit's websocket).
        services.AddAuthentication(o => o.DefaultScheme = SelectScheme)
            .AddPolicyScheme(SelectScheme, "Spine: key or console sign-in", o => o.ForwardDefaultSelector = http =>
                http.Request.Headers.Authorization.Count > 0 || http.Request.Headers.ContainsKey(ApiKeyAuthenticationHandler.KeyHeader)
                    ? ApiKeyAuthenticationHandler.SchemeName
                    : Scheme)
            .AddCookie(Scheme, o =>
            {
                o.LoginPath = "/console/sign-in";
                o.LogoutPath = "/console/sign-out";
                o.Cookie.Name = "spine.console";
                o.Cookie.HttpOnly = true;
                o.Cookie.SameSite = SameSiteMode.Strict;
                o.ExpireTimeSpan = TimeSpan.FromHours(8);
                o.SlidingExpiration = true;
            });
        services.AddAuthorizationBuilder()
            .AddPolicy(Policy, p => p.AddAuthenticationSchemes(Scheme).RequireAuthenticatedUser());
        services.AddHttpClient<ConsoleApi>(c => c.BaseAddress = new Uri(apiBaseAddress));
        return services;
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

        // Sign-in takes a key the silo knows; the cookie carries its identity, roles and the key (encrypted).
        app.MapPost("/console/sign-in", async (HttpContext http, [FromForm] string? key, [FromForm] string? returnUrl, ApiKeys keys) =>
        {
            if (string.IsNullOrWhiteSpace(key) || keys.Find(key.Trim()) is not { } actor)
            {
                return Results.Redirect("/console/sign-in?failed=1");
            }

            var principal = ApiKeyAuthenticationHandler.PrincipalOf(actor, Scheme);
            ((ClaimsIdentity)principal.Identity!).AddClaim(new Claim(KeyClaim, key.Trim()));
            await http.SignInAsync(Scheme, principal);
            return Results.LocalRedirect(returnUrl is { Length: > 0 } url && url.StartsWith("/console", StringComparison.Ordinal) ? url : "/console");
        });
        app.MapPost("/console/sign-out", async (HttpContext http) =>
        {
            await http.SignOutAsync(Scheme);
            return Results.Redirect("/console/sign-in");
        });
        return app;
    }
}
