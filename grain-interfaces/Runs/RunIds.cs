using System.Security.Cryptography;
using System.Text;

namespace Spine.Runs;

/// <summary>Run id rules shared by the client and the runtime.</summary>
public static class RunIds
{
    /// <summary>
    /// The run id for an idempotency key. Deterministic, so that two starts with the same
    /// (account, key) reach the same run grain, whose single activation makes the second start a read.
    /// </summary>
    public static string FromIdempotencyKey(string? accountId, string idempotencyKey)
    {
        ArgumentException.ThrowIfNullOrEmpty(idempotencyKey);
        var bytes = SHA256.HashData(Encoding.UTF8.GetBytes($"{accountId}\n{idempotencyKey}"));
        return "k-" + Convert.ToHexStringLower(bytes.AsSpan(0, 16));
    }

    /// <summary>A fresh random run id.</summary>
    public static string New() => "r-" + Guid.NewGuid().ToString("N");

    /// <summary>The run id a <see cref="StartRunRequest"/> goes to.</summary>
    public static string For(StartRunRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request.IdempotencyKey is { Length: > 0 } key ? FromIdempotencyKey(request.AccountId, key) : New();
    }
}
