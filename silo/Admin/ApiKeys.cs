using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using Spine.Identity;

namespace Spine.Silo.Admin;

/// <summary>
/// The configured API keys, by the SHA-256 of each: a presented key is hashed and looked up, so neither the lookup's
/// timing nor memory holds more than digests.
/// </summary>
internal sealed class ApiKeys
{
    private readonly FrozenDictionary<string, SpineActor> _byDigest;

    public ApiKeys(IOptions<AdminOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _byDigest = options.Value.Keys
            .Where(k => DigestOf(k) is not null && !string.IsNullOrWhiteSpace(k.Id))
            .ToFrozenDictionary(k => DigestOf(k)!, k => new SpineActor(k.Id!, [.. k.Roles]), StringComparer.Ordinal);
    }

    /// <summary>Whether any key is configured.</summary>
    public bool Any => _byDigest.Count > 0;

    /// <summary>The actor a presented key stands for, or null for a key nobody configured.</summary>
    public SpineActor? Find(string presented) =>
        _byDigest.TryGetValue(Digest(presented), out var actor) ? actor : null;

    /// <summary>The lower-case hex SHA-256 of a key's UTF-8 bytes.</summary>
    public static string Digest(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>The digest a configured key stands for: of its <see cref="AdminKey.Key"/>, or its <see cref="AdminKey.Sha256"/>.</summary>
    public static string? DigestOf(AdminKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (!string.IsNullOrEmpty(key.Key))
        {
            return Digest(key.Key);
        }

        return key.Sha256 is { } hex && IsDigest(hex) ? hex.ToLowerInvariant() : null;
    }

    /// <summary>Whether <paramref name="hex"/> is 64 hex digits.</summary>
    public static bool IsDigest(string hex) => hex.Length == 64 && hex.All(char.IsAsciiHexDigit);
}
