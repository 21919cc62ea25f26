using Spine.Audit;

namespace Spine.Tests.Infrastructure;

/// <summary>The journal key every test silo signs with (each silo of a test cluster must hold the same one).</summary>
public static class TestAudit
{
    /// <summary>32 bytes, base64.</summary>
    public const string Key = "c3BpbmUtdGVzdC1qb3VybmFsLWtleS0wMTIzNDU2Nzg=";

    /// <summary>A ring holding <see cref="Key"/>.</summary>
    public static AuditKeyRing Ring { get; } = new(new AuditOptions { Key = Key });
}
