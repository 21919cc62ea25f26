namespace Spine.Audit;

/// <summary>
/// The key of the journal's keyed hash chain (configuration section <c>Spine:Audit</c>). The key lives outside
/// the database: whoever can write to PostgreSQL but does not hold the key cannot write a row that verifies.
/// </summary>
public sealed class AuditOptions
{
    /// <summary>The smallest key, in bytes (HMAC-SHA-256 keys shorter than its output weaken it).</summary>
    public const int MinKeyBytes = 32;

    /// <summary>The signing key, base64 of at least 32 random bytes (for example <c>openssl rand -base64 32</c>). Set this or <see cref="KeyFile"/>.</summary>
    public string? Key { get; set; }

    /// <summary>A file holding the signing key as base64 (a mounted secret). Read when the silo starts.</summary>
    public string? KeyFile { get; set; }

    /// <summary>
    /// Keys that signed earlier rows, base64 each: after a rotation the old key stays here so the rows it signed
    /// still verify. Rows are never re-signed.
    /// </summary>
    public List<string> RetiredKeys { get; set; } = [];

    /// <summary>Problems with these settings, each naming its setting under <paramref name="prefix"/>.</summary>
    public IEnumerable<string> Problems(string prefix)
    {
        var hasKey = !string.IsNullOrWhiteSpace(Key);
        var hasFile = !string.IsNullOrWhiteSpace(KeyFile);
        if (hasKey == hasFile)
        {
            yield return hasKey
                ? $"{prefix}:Key and {prefix}:KeyFile are both set: set one."
                : $"{prefix}:Key (or {prefix}:KeyFile) is not set: the journal is signed with a key kept outside the database; generate one with `openssl rand -base64 32`.";
            yield break;
        }

        if (hasFile ? ReadFile(KeyFile!, out var fileProblem) is null : AuditKey.Parse(Key!, out fileProblem) is null)
        {
            yield return hasFile ? $"{prefix}:KeyFile '{KeyFile}': {fileProblem}" : $"{prefix}:Key: {fileProblem}";
        }

        for (var i = 0; i < RetiredKeys.Count; i++)
        {
            if (AuditKey.Parse(RetiredKeys[i], out var problem) is null)
            {
                yield return $"{prefix}:RetiredKeys:{i}: {problem}";
            }
        }
    }

    /// <summary>The signing key these settings name.</summary>
    /// <exception cref="InvalidOperationException">The settings name no readable, valid key (the validator reports why at start-up).</exception>
    public AuditKey SigningKey() =>
        (!string.IsNullOrWhiteSpace(KeyFile) ? ReadFile(KeyFile, out var problem) : AuditKey.Parse(Key ?? "", out problem))
        ?? throw new InvalidOperationException($"Spine:Audit names no usable key: {problem}");

    private static AuditKey? ReadFile(string path, out string? problem)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            problem = $"cannot be read: {e.Message}";
            return null;
        }

        return AuditKey.Parse(text, out problem);
    }
}
