namespace Spine.Silo.Admin;

/// <summary>
/// Settings of the admin HTTP API and console (configuration section <c>Silo:Admin</c>), checked by
/// <see cref="AdminOptionsValidator"/> at start-up.
/// </summary>
internal sealed class AdminOptions
{
    /// <summary>The configuration section name.</summary>
    public const string SectionName = "Silo:Admin";

    /// <summary>Serve the admin API under <c>/api/v1</c>. Default true; without keys every request is refused (401).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>The API keys that may call it, each mapped to an identity and its roles.</summary>
    public List<AdminKey> Keys { get; set; } = [];
}

/// <summary>
/// One API key: who presents it and the roles they hold. Give the key itself (<see cref="Key"/>, e.g. from a secret
/// store through the environment) or only its SHA-256 (<see cref="Sha256"/>), so that configuration never holds it.
/// </summary>
internal sealed class AdminKey
{
    /// <summary>The identity the key stands for, e.g. <c>alice@example.com</c>; journaled as the actor of what it does.</summary>
    public string? Id { get; set; }

    /// <summary>
    /// Its roles: <c>viewer</c> (read), <c>approver</c> (decide approvals, as one of the approval's roles the key also
    /// holds), <c>operator</c> (cancel, signal, replay, discard, resolve escalations, reset breakers, set budgets).
    /// </summary>
    public List<string> Roles { get; set; } = [];

    /// <summary>The key itself: at least 16 characters.</summary>
    public string? Key { get; set; }

    /// <summary>The SHA-256 of the key's UTF-8 bytes, as 64 hex digits (<c>printf %s "$KEY" | sha256sum</c>).</summary>
    public string? Sha256 { get; set; }
}
