using System.Security.Cryptography;

namespace Spine.Audit;

/// <summary>One key of the journal chain and its public fingerprint (the <c>key_id</c> each row carries).</summary>
public sealed class AuditKey
{
    private AuditKey(byte[] material)
    {
        Material = material;
        // A fingerprint, not the key: it names which key signed a row without helping anyone forge one.
        var digest = SHA256.HashData([.. "spine.audit.key-id:"u8, .. material]);
        Id = Convert.ToHexStringLower(digest.AsSpan(0, 8));
    }

    /// <summary>The fingerprint stored with each row the key signs.</summary>
    public string Id { get; }

    internal byte[] Material { get; }

    /// <summary>Parses base64 key text; null (with the reason) when it is not base64 of at least <see cref="AuditOptions.MinKeyBytes"/> bytes.</summary>
    public static AuditKey? Parse(string text, out string? problem)
    {
        ArgumentNullException.ThrowIfNull(text);
        byte[] material;
        try
        {
            material = Convert.FromBase64String(text.Trim());
        }
        catch (FormatException)
        {
            problem = "the key is not base64.";
            return null;
        }

        if (material.Length < AuditOptions.MinKeyBytes)
        {
            problem = $"the key is {material.Length} bytes: it must be at least {AuditOptions.MinKeyBytes}.";
            return null;
        }

        problem = null;
        return new AuditKey(material);
    }

    /// <summary>A new random key as base64 (what <c>openssl rand -base64 32</c> prints).</summary>
    public static string Generate() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(AuditOptions.MinKeyBytes));

    /// <inheritdoc />
    public override string ToString() => Id;
}
