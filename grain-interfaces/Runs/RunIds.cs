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
    /// <exception cref="Spine.Errors.InvalidIdentifierException">The account id or the key holds a control character or an unpaired surrogate.</exception>
    public static string FromIdempotencyKey(string? accountId, string idempotencyKey)
    {
        ArgumentException.ThrowIfNullOrEmpty(idempotencyKey);
        CheckIdentifier(accountId, "account id");
        CheckIdentifier(idempotencyKey, "idempotency key");
        var bytes = SHA256.HashData(Encoding.UTF8.GetBytes($"{accountId}\n{idempotencyKey}"));
        return "k-" + Convert.ToHexStringLower(bytes.AsSpan(0, 16));
    }

    /// <summary>
    /// Refuses control characters (the id derivation joins account and key with a newline, so a newline in
    /// either would make two different pairs one run) and unpaired surrogates (which UTF-8 cannot carry).
    /// </summary>
    /// <exception cref="Spine.Errors.InvalidIdentifierException">The text holds such a character.</exception>
    public static void CheckIdentifier(string? text, string what)
    {
        if (text is null)
        {
            return;
        }

        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsControl(c))
            {
                throw new Spine.Errors.InvalidIdentifierException(what, i);
            }

            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(c))
            {
                throw new Spine.Errors.InvalidIdentifierException(what, i);
            }
        }
    }

    /// <summary>A fresh random run id.</summary>
    public static string New() => "r-" + Guid.NewGuid().ToString("N");

    /// <summary>The run id a <see cref="StartRunRequest"/> goes to.</summary>
    public static string For(StartRunRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        CheckIdentifier(request.AccountId, "account id");
        return request.IdempotencyKey is { Length: > 0 } key ? FromIdempotencyKey(request.AccountId, key) : New();
    }
}
