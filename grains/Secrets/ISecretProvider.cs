namespace Spine.Secrets;

/// <summary>
/// Where a tool's secrets come from: asked at each attempt of a call, so a secret rotated at its source is used by the
/// next attempt without a restart. A Vault or Key Vault adapter implements this one method; register it with
/// <c>services.AddSingleton&lt;ISecretProvider, MyProvider&gt;()</c> after <c>AddSpine</c>.
/// </summary>
public interface ISecretProvider
{
    /// <summary>The secret's current value; null when this provider does not hold it.</summary>
    ValueTask<string?> GetAsync(string name, CancellationToken cancellationToken);

    /// <summary>Where an operator puts the secret for this provider (for error messages), e.g. an environment variable's name.</summary>
    string Describe(string name);
}
