using Npgsql;
using Spine.Audit;
using Spine.Errors;
using Spine.Journal;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Audit;

/// <summary>
/// The journal attacked as someone with database access would: each change is detected by <c>audit verify</c>,
/// and a run whose journal does not verify never executes again.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class TamperTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task TailRowsOfAFinishedRunDeleted_VerifyReportsTheCut_AndTheRunNeverExecutesAgain()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(3));
        await fixture.Client.WaitAsync(run.RunId, Patience);
        var rows = (await fixture.Client.GetJournalAsync(run.RunId)).Count;

        // The run's end and its last step's outcome, deleted behind the journal's trigger.
        await AsOwnerAsync(
            "ALTER TABLE spine_journal DISABLE TRIGGER spine_journal_no_update",
            $"DELETE FROM spine_journal WHERE run_id = '{run.RunId}' AND seq >= {rows - 2}",
            "ALTER TABLE spine_journal ENABLE TRIGGER spine_journal_no_update");
        await DeactivateAsync(run.RunId);
        var check = await fixture.Client.VerifyJournalAsync(run.RunId);
        var reloaded = await fixture.Client.GetAsync(run.RunId);
        await Task.Delay(TimeSpan.FromSeconds(1));

        Assert.False(check.Intact);
        Assert.Equal(rows - 2, check.FirstBadSeq);
        Assert.Contains("rows were deleted", check.Problem, StringComparison.Ordinal);
        Assert.Equal(RunStatus.Quarantined, reloaded.Status);
        Assert.Equal("journal_tampered", reloaded.Error?.Kind);
        Assert.Equal(1, Effects.Of(run.RunId, "step-3"));
        Assert.Equal(rows - 2, await CountRowsAsync(run.RunId));
        // The index of a finished run is final: it still says Completed, and verify says why that is not the journal.
        Assert.Equal(RunStatus.Completed, await IndexStatusAsync(run.RunId));
    }

    [Fact]
    public async Task TailRowOfASleepingRunDeleted_RunIsQuarantinedInTheIndex_AndTheSweepRunsNothing()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(4, SleepMilliseconds: 3_000));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.Sleeping, Patience, "the run sleeping");
        var rows = (await fixture.Client.GetJournalAsync(run.RunId)).Count;

        await AsOwnerAsync(
            "ALTER TABLE spine_journal DISABLE TRIGGER spine_journal_no_update",
            $"DELETE FROM spine_journal WHERE run_id = '{run.RunId}' AND seq = {rows - 1}",
            "ALTER TABLE spine_journal ENABLE TRIGGER spine_journal_no_update");
        await DeactivateAsync(run.RunId);
        // Past the sleep: the recovery sweep activates the run (by its index row), which must not execute.
        await Task.Delay(TimeSpan.FromSeconds(6));
        var info = await fixture.Client.GetAsync(run.RunId);

        Assert.Equal(RunStatus.Quarantined, info.Status);
        Assert.Equal(RunStatus.Quarantined, await IndexStatusAsync(run.RunId));
        Assert.Equal(0, Effects.Of(run.RunId, "step-3"));
        Assert.Equal(rows - 1, await CountRowsAsync(run.RunId));
        // Like a finished run, a quarantined one takes no cancel: nothing is written to it.
        Assert.Equal(RunStatus.Quarantined, (await fixture.Client.CancelAsync(run.RunId, "stop")).Status);
        Assert.Equal(rows - 1, await CountRowsAsync(run.RunId));
    }

    [Fact]
    public async Task WholeRunDeleted_VerifyReportsIt_AndTheSameStartIsRefused()
    {
        var key = "tamper-" + Guid.NewGuid().ToString("N")[..10];
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(2), idempotencyKey: key);
        await fixture.Client.WaitAsync(run.RunId, Patience);

        await AsOwnerAsync(
            "ALTER TABLE spine_journal DISABLE TRIGGER spine_journal_no_update",
            $"DELETE FROM spine_journal WHERE run_id = '{run.RunId}'",
            "ALTER TABLE spine_journal ENABLE TRIGGER spine_journal_no_update");
        await DeactivateAsync(run.RunId);
        var check = await fixture.Client.VerifyJournalAsync(run.RunId);
        var all = await fixture.Client.VerifyAllJournalsAsync(maxReported: 10_000);

        Assert.False(check.Intact);
        Assert.Equal(0, check.Rows);
        Assert.Contains("journal is gone", check.Problem, StringComparison.Ordinal);
        Assert.False(all.Intact);
        Assert.Contains(all.Broken, b => b.RunId == run.RunId);
        // Starting it again must not write a fresh history over the deleted one (and run its steps twice).
        await Assert.ThrowsAsync<JournalTamperedException>(() => fixture.Client.StartAsync("test.steps", new StepsInput(2), idempotencyKey: key));
        Assert.Equal(1, Effects.Of(run.RunId, "step-1"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PayloadEditedAndChainRecomputedWithoutTheKey_VerifyReportsTheFirstRow(bool ownKey)
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(3));
        await fixture.Client.WaitAsync(run.RunId, Patience);
        var stored = await ReadRowsAsync(run.RunId);

        // The attacker edits step 2's result and re-hashes every row, with plain SHA-256 or under a key of their
        // own, moves the head anchor to match, and writes it all back as the owner, triggers off.
        var attackerKey = ownKey ? AuditKey.Parse(AuditKey.Generate(), out _) : null;
        var previous = JournalHash.Genesis;
        var forged = new List<JournalRow>();
        foreach (var row in stored)
        {
            var changed = row with { PrevHash = previous, Payload = row.Kind == JournalKind.Step && row.Step == 2 ? "{\"value\":200}" : row.Payload, KeyId = ownKey ? row.KeyId : null };
            changed = changed with { Hash = JournalHash.Compute(attackerKey, changed) };
            forged.Add(changed);
            previous = changed.Hash;
        }

        await using (var data = NpgsqlDataSource.Create(fixture.Postgres.OwnerConnectionString))
        await using (var batch = data.CreateBatch())
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand("ALTER TABLE spine_journal DISABLE TRIGGER spine_journal_no_update"));
            batch.BatchCommands.Add(new NpgsqlBatchCommand("ALTER TABLE spine_journal_heads DISABLE TRIGGER spine_journal_heads_forward_only"));
            foreach (var row in forged)
            {
                var update = new NpgsqlBatchCommand("UPDATE spine_journal SET payload = @payload, prev_hash = @prev, hash = @hash, key_id = @key WHERE run_id = @run AND seq = @seq");
                update.Parameters.AddWithValue("payload", (object?)row.Payload ?? DBNull.Value);
                update.Parameters.AddWithValue("prev", row.PrevHash);
                update.Parameters.AddWithValue("hash", row.Hash);
                update.Parameters.AddWithValue("key", (object?)row.KeyId ?? DBNull.Value);
                update.Parameters.AddWithValue("run", row.RunId);
                update.Parameters.AddWithValue("seq", row.Seq);
                batch.BatchCommands.Add(update);
            }

            var head = new NpgsqlBatchCommand("UPDATE spine_journal_heads SET mac = @mac WHERE run_id = @run");
            head.Parameters.AddWithValue("mac", forged[^1].Hash);
            head.Parameters.AddWithValue("run", run.RunId);
            batch.BatchCommands.Add(head);
            batch.BatchCommands.Add(new NpgsqlBatchCommand("ALTER TABLE spine_journal_heads ENABLE TRIGGER spine_journal_heads_forward_only"));
            batch.BatchCommands.Add(new NpgsqlBatchCommand("ALTER TABLE spine_journal ENABLE TRIGGER spine_journal_no_update"));
            await batch.ExecuteNonQueryAsync();
        }

        var check = await fixture.Client.VerifyJournalAsync(run.RunId);

        Assert.False(check.Intact);
        Assert.Equal(0, check.FirstBadSeq);
    }

    [Fact]
    public async Task RowForgedWithTheSilosLoginAndKey_OnAFinishedRun_IsRefusedByTheJournal()
    {
        // The worst case short of the owner: a compromised silo, holding both its login and the journal key,
        // appends a correctly signed row to a finished run.
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(1));
        await fixture.Client.WaitAsync(run.RunId, Patience);
        var stored = await ReadRowsAsync(run.RunId);
        var last = stored[^1];
        var at = JournalHash.ToStoredPrecision(DateTimeOffset.UtcNow);
        var key = TestAudit.Ring.Signing;
        var hash = JournalHash.Compute(key, last.Hash, run.RunId, last.Seq + 1, JournalKind.Step, 9, "forged", true, "1", at);

        await using var data = NpgsqlDataSource.Create(fixture.Postgres.RuntimeConnectionString);
        await using var insert = data.CreateCommand("""
            INSERT INTO spine_journal (run_id, seq, kind, step, name, ok, payload, recorded_at, prev_hash, hash, key_id)
            VALUES (@run, @seq, 1, 9, 'forged', true, '1', @at, @prev, @hash, @key)
            """);
        insert.Parameters.AddWithValue("run", run.RunId);
        insert.Parameters.AddWithValue("seq", last.Seq + 1);
        insert.Parameters.AddWithValue("at", at.UtcDateTime);
        insert.Parameters.AddWithValue("prev", last.Hash);
        insert.Parameters.AddWithValue("hash", hash);
        insert.Parameters.AddWithValue("key", key.Id);
        var error = await Assert.ThrowsAsync<PostgresException>(() => insert.ExecuteNonQueryAsync());

        Assert.Equal("SPJ01", error.SqlState);
        Assert.Equal(stored.Count, await CountRowsAsync(run.RunId));
        Assert.True((await fixture.Client.VerifyJournalAsync(run.RunId)).Intact);
    }

    [Fact]
    public async Task RowsWrittenAroundTheTriggerByTheOwner_VerifyReportsThemAfterTheHead()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(1));
        await fixture.Client.WaitAsync(run.RunId, Patience);
        var stored = await ReadRowsAsync(run.RunId);
        var last = stored[^1];
        var at = JournalHash.ToStoredPrecision(DateTimeOffset.UtcNow);
        var hash = JournalHash.Compute(TestAudit.Ring.Signing, last.Hash, run.RunId, last.Seq + 1, JournalKind.Step, 9, "forged", true, "1", at);

        await AsOwnerAsync(
            "ALTER TABLE spine_journal DISABLE TRIGGER spine_journal_advance_heads",
            $"INSERT INTO spine_journal (run_id, seq, kind, step, name, ok, payload, recorded_at, prev_hash, hash, key_id) VALUES ('{run.RunId}', {last.Seq + 1}, 1, 9, 'forged', true, '1', '{at.UtcDateTime:O}', '\\x{Convert.ToHexString(last.Hash)}', '\\x{Convert.ToHexString(hash)}', '{TestAudit.Ring.Signing.Id}')",
            "ALTER TABLE spine_journal ENABLE TRIGGER spine_journal_advance_heads");
        var check = await fixture.Client.VerifyJournalAsync(run.RunId);

        Assert.False(check.Intact);
        Assert.Equal(last.Seq + 1, check.FirstBadSeq);
        Assert.Contains("after the head anchor", check.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AuditExport_OneRun_WritesEveryRowWithItsKeyAndHashes()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(2));
        await fixture.Client.WaitAsync(run.RunId, Patience);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);

        var exported = new List<AuditEntry>();
        await foreach (var entry in fixture.Client.ExportAuditAsync(runId: run.RunId))
        {
            exported.Add(entry);
        }

        Assert.Equal(journal.Select(j => j.Seq), exported.Select(e => e.Seq));
        Assert.Equal(journal.Select(j => j.Hash), exported.Select(e => e.Hash));
        Assert.All(exported, e => Assert.Equal(TestAudit.Ring.Signing.Id, e.KeyId));
        Assert.Equal(exported.Skip(1).Select(e => e.PrevHash), exported.SkipLast(1).Select(e => e.Hash));
    }

    private async Task AsOwnerAsync(params string[] statements)
    {
        await using var data = NpgsqlDataSource.Create(fixture.Postgres.OwnerConnectionString);
        await using var batch = data.CreateBatch();
        foreach (var sql in statements)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(sql));
        }

        await batch.ExecuteNonQueryAsync();
    }

    private Task DeactivateAsync(string runId) =>
        fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(runId));

    private async Task<int> CountRowsAsync(string runId) =>
        (int)await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_journal WHERE run_id = @id", ("id", runId));

    private async Task<List<JournalRow>> ReadRowsAsync(string runId)
    {
        await using var database = new Spine.Storage.SpineDatabase(Microsoft.Extensions.Options.Options.Create(new Spine.Hosting.SpineOptions { ConnectionString = fixture.Postgres.RuntimeConnectionString }));
        return await new JournalStore(database).ReadAsync(runId);
    }

    /// <summary>The status the run index (what <c>spine list</c> shows) holds.</summary>
    private async Task<RunStatus> IndexStatusAsync(string runId) =>
        (RunStatus)await fixture.Postgres.ScalarAsync<short>("SELECT status FROM spine_runs WHERE run_id = @id", ("id", runId));
}
