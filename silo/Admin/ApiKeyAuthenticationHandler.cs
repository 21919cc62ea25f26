using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;
using Spine.Identity;

namespace Spine.Silo.Admin;

/// <summary>
/// Authenticates a request by an API key, sent as <c>Authorization: Bearer &lt;key&gt;</c> or <c>X-Spine-Key: &lt;key&gt;</c>:
/// the principal carries the key's identity (<see cref="ClaimTypes.NameIdentifier"/>) and its roles (<see cref="ClaimTypes.Role"/>).
/// </summary>
internal sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    ApiKeys keys)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    /// <summary>The scheme's name.</summary>
    public const string SchemeName = "SpineApiKey";

    /// <summary>The header that may carry the key instead of <c>Authorization</c>.</summary>
    public const string KeyHeader = "X-Spine-Key";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        string? presented = null;
        if (Request.Headers.Authorization.ToString() is { Length: > 7 } authorization
            && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            presented = authorization[7..].Trim();
        }
        else if (Request.Headers[KeyHeader].ToString() is { Length: > 0 } header)
        {
            presented = header.Trim();
        }

        if (string.IsNullOrEmpty(presented))
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        if (keys.Find(presented) is not { } actor)
        {
            return Task.FromResult(AuthenticateResult.Fail("The API key is not one the silo knows."));
        }

        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(PrincipalOf(actor, SchemeName), SchemeName)));
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.Headers.WWWAuthenticate = "Bearer realm=\"spine\"";
        return base.HandleChallengeAsync(properties);
    }

    /// <summary>A principal for <paramref name="actor"/>: its id and one role claim per role.</summary>
    public static ClaimsPrincipal PrincipalOf(SpineActor actor, string scheme)
    {
        ArgumentNullException.ThrowIfNull(actor);
        var claims = new List<Claim> { new(ClaimTypes.NameIdentifier, actor.Id), new(ClaimTypes.Name, actor.Id) };
        claims.AddRange(actor.Roles.Select(r => new Claim(ClaimTypes.Role, r)));
        return new ClaimsPrincipal(new ClaimsIdentity(claims, scheme, ClaimTypes.Name, ClaimTypes.Role));
    }

    /// <summary>The actor a principal authenticated by this scheme (or the console's cookie) stands for.</summary>
    public static SpineActor ActorOf(ClaimsPrincipal user)
    {
        ArgumentNullException.ThrowIfNull(user);
        var id = user.FindFirstValue(ClaimTypes.NameIdentifier)
            ?? throw new InvalidOperationException("The request's principal carries no identity.");
        return new SpineActor(id, [.. user.FindAll(ClaimTypes.Role).Select(c => c.Value)]);
    }
}
