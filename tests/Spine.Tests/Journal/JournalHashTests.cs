using Spine.Audit;
using Spine.Journal;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Journal;

/// <summary>The journal's hash chain, computed and verified in memory.</summary>
public sealed class JournalHashTests
{
    private const string RunId = "run-hash";
    private static readonly DateTimeOffset At = new(2026, 3, 4, 5, 6, 7, TimeSpan.Zero);

    public static TheoryData<string> Fields => ["run_id", "kind", "step", "name", "ok", "payload", "recorded_at", "attempt", "prev_hash", "hash", "key_id"];

    [Fact]
    public void Genesis_Is32ZeroBytes()
    {
        Assert.Equal(new byte[32], JournalHash.Genesis);
    }

    [Fact]
    public void Verify_ChainComputedRowByRow_IsIntact()
    {
        var rows = Chain();

        var check = JournalHash.Verify(RunId, rows, TestAudit.Ring);

        Assert.True(check.Intact, check.Problem);
        Assert.Equal(rows.Count, check.Rows);
        Assert.Null(check.FirstBadSeq);
        Assert.Equal(JournalHash.Genesis, rows[0].PrevHash);
    }

    [Fact]
    public void Verify_FirstRowNotChainedToGenesis_BreaksAtSeqZero()
    {
        var rows = Chain();
        var other = new byte[32];
        other[31] = 1;
        rows[0] = Rehash(rows[0] with { PrevHash = other });

        var check = JournalHash.Verify(RunId, rows, TestAudit.Ring);

        Assert.False(check.Intact);
        Assert.Equal(0, check.FirstBadSeq);
    }

    [Theory]
    [MemberData(nameof(Fields))]
    public void Verify_AnyFieldOfAnyRowChanged_BreaksAtThatRow(string field)
    {
        for (var seq = 0; seq < Chain().Count; seq++)
        {
            var rows = Chain();
            rows[seq] = Change(rows[seq], field);

            var check = JournalHash.Verify(RunId, rows, TestAudit.Ring);

            Assert.False(check.Intact, $"changing {field} of row {seq} went unnoticed");
            Assert.Equal(seq, check.FirstBadSeq);
        }
    }

    [Fact]
    public void Verify_RowEditedAndRehashed_BreaksAtTheNextRow()
    {
        var rows = Chain();
        rows[2] = Rehash(rows[2] with { Payload = "{\"value\":99}" });

        var check = JournalHash.Verify(RunId, rows, TestAudit.Ring);

        Assert.False(check.Intact);
        Assert.Equal(3, check.FirstBadSeq);
        Assert.Equal("prev_hash does not match the previous row's hash", check.Problem);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Verify_TwoRowsSwapped_Breaks(bool renumbered)
    {
        var rows = Chain();
        (rows[1], rows[2]) = renumbered ? (rows[2] with { Seq = 1 }, rows[1] with { Seq = 2 }) : (rows[2], rows[1]);

        var check = JournalHash.Verify(RunId, rows, TestAudit.Ring);

        Assert.False(check.Intact);
        Assert.Equal(1, check.FirstBadSeq);
    }

    [Fact]
    public void Verify_RowMissing_ReportsTheGap()
    {
        var rows = Chain();
        rows.RemoveAt(2);

        var check = JournalHash.Verify(RunId, rows, TestAudit.Ring);

        Assert.False(check.Intact);
        Assert.Equal(2, check.FirstBadSeq);
        Assert.Equal("row 2 is missing (next stored row is 3)", check.Problem);
    }

    [Fact]
    public void Compute_TextMovedBetweenNameAndPayload_HashesDifferently()
    {
        var a = JournalHash.Compute(TestAudit.Ring.Signing, JournalHash.Genesis, RunId, 1, JournalKind.Step, 1, "ab", true, "c", At);
        var b = JournalHash.Compute(TestAudit.Ring.Signing, JournalHash.Genesis, RunId, 1, JournalKind.Step, 1, "a", true, "bc", At);

        Assert.NotEqual(a, b);
    }

    [Fact]
    public void Compute_TimeBeyondStoredPrecision_HashesAsStored()
    {
        var precise = At.AddTicks(7);

        var stored = JournalHash.ToStoredPrecision(precise);

        Assert.Equal(At, stored);
        Assert.Equal(
            JournalHash.Compute(TestAudit.Ring.Signing, JournalHash.Genesis, RunId, 0, JournalKind.RunStarted, null, "w", true, null, At),
            JournalHash.Compute(TestAudit.Ring.Signing, JournalHash.Genesis, RunId, 0, JournalKind.RunStarted, null, "w", true, null, stored));
    }

    [Fact]
    public void Verify_ChainRecomputedWithoutTheKey_BreaksAtTheFirstRow()
    {
        // What an attacker with database access but not the key can do: rewrite a payload and recompute the
        // chain with plain SHA-256, as the journal did before it was keyed, or under a key of their own.
        var rows = Chain();
        rows[2] = rows[2] with { Payload = "{\"value\":99}" };
        var unkeyed = Recompute(rows, null, null);
        var ownKey = AuditKey.Parse(AuditKey.Generate(), out _)!;
        var forged = Recompute(rows, ownKey, TestAudit.Ring.Signing.Id);

        var unkeyedCheck = JournalHash.Verify(RunId, unkeyed, TestAudit.Ring);
        var forgedCheck = JournalHash.Verify(RunId, forged, TestAudit.Ring);

        Assert.False(unkeyedCheck.Intact);
        Assert.Equal(0, unkeyedCheck.FirstBadSeq);
        Assert.Contains("not signed with a key", unkeyedCheck.Problem, StringComparison.Ordinal);
        Assert.False(forgedCheck.Intact);
        Assert.Equal(0, forgedCheck.FirstBadSeq);
    }

    [Fact]
    public void Verify_UnkeyedRowsBelowTheLegacyMark_AreIntact_AndAboveItBreak()
    {
        // A run written before the chain was keyed: its head records how many rows it had then.
        var rows = Recompute(Chain(), null, null);
        var keyedTail = Recompute(Chain(), null, null);
        keyedTail = keyedTail.Take(3).Concat(Recompute(Chain(), TestAudit.Ring.Signing, TestAudit.Ring.Signing.Id, keyedTail[2].Hash, from: 3)).ToList();

        Assert.True(JournalHash.Verify(RunId, rows, TestAudit.Ring, legacyRows: rows.Count).Intact);
        Assert.True(JournalHash.Verify(RunId, keyedTail, TestAudit.Ring, legacyRows: 3).Intact);
        var check = JournalHash.Verify(RunId, rows, TestAudit.Ring, legacyRows: 3);
        Assert.False(check.Intact);
        Assert.Equal(3, check.FirstBadSeq);
    }

    [Fact]
    public void Verify_RowsSignedWithARetiredKey_AreIntactOnlyWhileTheRingHoldsIt()
    {
        var old = AuditKey.Generate();
        var oldKey = AuditKey.Parse(old, out _)!;
        var rows = Recompute(Chain(), oldKey, oldKey.Id);
        var rotated = new AuditKeyRing(new AuditOptions { Key = AuditKey.Generate(), RetiredKeys = [old] });

        Assert.True(JournalHash.Verify(RunId, rows, rotated).Intact);
        var check = JournalHash.Verify(RunId, rows, TestAudit.Ring);
        Assert.False(check.Intact);
        Assert.Contains("not configured", check.Problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "is not set")]
    [InlineData("not base64!", "not base64")]
    [InlineData("c2hvcnQ=", "at least 32")]
    public void AuditOptions_MissingOrWeakKey_NamesTheSetting(string key, string expected)
    {
        var problems = new AuditOptions { Key = key }.Problems("Spine:Audit").ToList();

        var problem = Assert.Single(problems);
        Assert.Contains("Spine:Audit:Key", problem, StringComparison.Ordinal);
        Assert.Contains(expected, problem, StringComparison.Ordinal);
    }

    /// <summary>Re-signs rows from <paramref name="from"/> on under <paramref name="key"/>, relinking them.</summary>
    private static List<JournalRow> Recompute(List<JournalRow> rows, AuditKey? key, string? keyId, byte[]? previous = null, int from = 0)
    {
        var result = new List<JournalRow>();
        previous ??= JournalHash.Genesis;
        foreach (var row in rows.Skip(from))
        {
            var relinked = row with { PrevHash = previous, KeyId = keyId };
            relinked = relinked with { Hash = JournalHash.Compute(key, relinked) };
            result.Add(relinked);
            previous = relinked.Hash;
        }

        return result;
    }

    /// <summary>A run's journal as the writer builds it: each row chained to the one before.</summary>
    private static List<JournalRow> Chain()
    {
        (JournalKind Kind, int? Step, string Name, bool Ok, string? Payload, int? Attempt)[] fields =
        [
            (JournalKind.RunStarted, null, "test.steps", true, "{\"workflowType\":\"test.steps\"}", null),
            (JournalKind.AttemptFailed, 1, "fetch", false, "{\"kind\":\"transient\"}", 1),
            (JournalKind.Step, 1, "fetch", true, "{\"value\":1}", 2),
            (JournalKind.Tool, 2, "lookup", true, "{\"value\":2}", 1),
            (JournalKind.RunCompleted, null, "completed", true, "3", null),
        ];
        var rows = new List<JournalRow>();
        var previous = JournalHash.Genesis;
        for (var seq = 0; seq < fields.Length; seq++)
        {
            var (kind, step, name, ok, payload, attempt) = fields[seq];
            var row = Rehash(new JournalRow(RunId, seq, kind, step, name, ok, payload, At.AddSeconds(seq), previous, [], attempt, TestAudit.Ring.Signing.Id));
            rows.Add(row);
            previous = row.Hash;
        }

        return rows;
    }

    private static JournalRow Rehash(JournalRow row) => row with { Hash = JournalHash.Compute(TestAudit.Ring.Signing, row) };

    private static JournalRow Change(JournalRow row, string field) => field switch
    {
        "run_id" => row with { RunId = row.RunId + "x" },
        "kind" => row with { Kind = row.Kind == JournalKind.Step ? JournalKind.Tool : JournalKind.Step },
        "step" => row with { Step = (row.Step ?? 0) + 1 },
        "name" => row with { Name = row.Name + "x" },
        "ok" => row with { Ok = !row.Ok },
        "payload" => row with { Payload = row.Payload + " " },
        "recorded_at" => row with { RecordedAt = row.RecordedAt.AddTicks(10) },
        "attempt" => row with { Attempt = (row.Attempt ?? 0) + 1 },
        "prev_hash" => row with { PrevHash = Flip(row.PrevHash) },
        "hash" => row with { Hash = Flip(row.Hash) },
        "key_id" => row with { KeyId = "0000000000000000" },
        _ => throw new ArgumentOutOfRangeException(nameof(field), field, "no such journal field"),
    };

    private static byte[] Flip(byte[] hash)
    {
        var copy = (byte[])hash.Clone();
        copy[0] ^= 0xFF;
        return copy;
    }
}
