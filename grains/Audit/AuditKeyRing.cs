using Microsoft.Extensions.Options;
using Spine.Hosting;

namespace Spine.Audit;

/// <summary>The silo's journal keys: the one new rows are signed with, and the retired ones earlier rows may carry.</summary>
public sealed class AuditKeyRing
{
    private readonly Dictionary<string, AuditKey> _keys;

    /// <summary>Builds the ring from <c>Spine:Audit</c>.</summary>
    public AuditKeyRing(IOptions<SpineOptions> options)
        : this((options ?? throw new ArgumentNullException(nameof(options))).Value.Audit)
    {
    }

    /// <summary>Builds the ring from audit settings.</summary>
    public AuditKeyRing(AuditOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Signing = options.SigningKey();
        _keys = new Dictionary<string, AuditKey>(StringComparer.Ordinal) { [Signing.Id] = Signing };
        foreach (var text in options.RetiredKeys)
        {
            if (AuditKey.Parse(text, out var problem) is not { } key)
            {
                throw new InvalidOperationException($"Spine:Audit:RetiredKeys holds an unusable key: {problem}");
            }

            _keys.TryAdd(key.Id, key);
        }
    }

    /// <summary>The key new rows are signed with.</summary>
    public AuditKey Signing { get; }

    /// <summary>The key with fingerprint <paramref name="id"/>, or null when this silo does not hold it.</summary>
    public AuditKey? Find(string id) => _keys.GetValueOrDefault(id);
}
