using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Spine.Audit;
using Spine.Runs;

namespace Spine.Journal;

/// <summary>
/// The hash chain of a run's journal: each row's hash is an HMAC-SHA-256, under a key kept outside the database,
/// of the previous row's hash and every field of the row, so editing, deleting or reordering any row breaks every
/// hash after it, and nobody without the key can compute a chain that verifies. Rows written before the chain was
/// keyed (no key id) carry a plain SHA-256 and verify only below the run's legacy mark.
/// </summary>
public static class JournalHash
{
    /// <summary>The previous hash of seq 0.</summary>
    public static byte[] Genesis { get; } = new byte[32];

    /// <summary>Truncates to microseconds, the precision PostgreSQL stores, so that a re-read row hashes the same.</summary>
    public static DateTimeOffset ToStoredPrecision(DateTimeOffset value) =>
        new(value.UtcTicks - (value.UtcTicks % 10), TimeSpan.Zero);

    /// <summary>Computes a row's hash under <paramref name="key"/> (null: the unkeyed SHA-256 of rows written before the keyed chain).</summary>
    public static byte[] Compute(AuditKey? key, byte[] prevHash, string runId, int seq, JournalKind kind, int? step, string name, bool ok, string? payload, DateTimeOffset recordedAt, int? attempt = null)
    {
        ArgumentNullException.ThrowIfNull(prevHash);
        using var hash = key is null
            ? IncrementalHash.CreateHash(HashAlgorithmName.SHA256)
            : IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key.Material);
        Span<byte> number = stackalloc byte[8];
        hash.AppendData(prevHash);
        AppendString(hash, runId);
        BinaryPrimitives.WriteInt32BigEndian(number, seq);
        hash.AppendData(number[..4]);
        BinaryPrimitives.WriteInt16BigEndian(number, (short)kind);
        hash.AppendData(number[..2]);
        BinaryPrimitives.WriteInt32BigEndian(number, step ?? -1);
        hash.AppendData(number[..4]);
        AppendString(hash, name);
        hash.AppendData([ok ? (byte)1 : (byte)0]);
        AppendString(hash, payload);
        BinaryPrimitives.WriteInt64BigEndian(number, recordedAt.UtcTicks);
        hash.AppendData(number);
        if (attempt is { } value)
        {
            // Only rows that carry an attempt hash it, so rows written before the column existed still verify.
            BinaryPrimitives.WriteInt32BigEndian(number, value);
            hash.AppendData(number[..4]);
        }

        if (key is not null)
        {
            AppendString(hash, key.Id);
        }

        return hash.GetHashAndReset();
    }

    /// <summary>Recomputes a row's hash from its stored fields under <paramref name="key"/>.</summary>
    public static byte[] Compute(AuditKey? key, JournalRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        return Compute(key, row.PrevHash, row.RunId, row.Seq, row.Kind, row.Step, row.Name, row.Ok, row.Payload, row.RecordedAt, row.Attempt);
    }

    /// <summary>
    /// Checks a run's rows, read in seq order: seq runs from 0 without gaps, each row's prev_hash is the previous
    /// row's hash (<see cref="Genesis"/> for seq 0), and each row's hash matches its fields under the key its key id
    /// names in <paramref name="keys"/>. A row without a key id passes only below <paramref name="legacyRows"/>
    /// (the rows the run had when the chain became keyed, as its head records).
    /// </summary>
    public static JournalVerification Verify(string runId, IReadOnlyList<JournalRow> rows, AuditKeyRing keys, int legacyRows = 0)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(keys);
        var previous = Genesis;
        for (var i = 0; i < rows.Count; i++)
        {
            var row = rows[i];
            if (row.Seq != i)
            {
                return new JournalVerification(runId, rows.Count, false, i, $"row {i} is missing (next stored row is {row.Seq})");
            }

            if (!row.PrevHash.AsSpan().SequenceEqual(previous))
            {
                return new JournalVerification(runId, rows.Count, false, row.Seq, "prev_hash does not match the previous row's hash");
            }

            AuditKey? key = null;
            if (row.KeyId is null)
            {
                if (row.Seq >= legacyRows)
                {
                    return new JournalVerification(runId, rows.Count, false, row.Seq, "the row is not signed with a key (only rows written before the keyed chain may be)");
                }
            }
            else if ((key = keys.Find(row.KeyId)) is null)
            {
                return new JournalVerification(runId, rows.Count, false, row.Seq, $"the row is signed with key {row.KeyId}, which is not configured (Spine:Audit:Key or RetiredKeys)", row.KeyId);
            }

            if (!CryptographicOperations.FixedTimeEquals(Compute(key, row), row.Hash))
            {
                return new JournalVerification(runId, rows.Count, false, row.Seq, "the row's contents do not match its hash");
            }

            previous = row.Hash;
        }

        return new JournalVerification(runId, rows.Count, true);
    }

    // Length-prefixed so that ("ab","c") and ("a","bc") hash differently; null is length -1.
    private static void AppendString(IncrementalHash hash, string? value)
    {
        Span<byte> length = stackalloc byte[4];
        if (value is null)
        {
            BinaryPrimitives.WriteInt32BigEndian(length, -1);
            hash.AppendData(length);
            return;
        }

        var bytes = Encoding.UTF8.GetBytes(value);
        BinaryPrimitives.WriteInt32BigEndian(length, bytes.Length);
        hash.AppendData(length);
        hash.AppendData(bytes);
    }
}
