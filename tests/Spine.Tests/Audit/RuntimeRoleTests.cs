using Npgsql;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Audit;

/// <summary>What the silo's own login cannot do to the journal, its heads and the run index (see docs/audit.md).</summary>
[Collection(ClusterCollection.Name)]
public sealed class RuntimeRoleTests(ClusterFixture fixture)
{
    public static TheoryData<string> Refused => new()
    {
        "UPDATE spine_journal SET payload = '1' WHERE run_id = @id",
        "DELETE FROM spine_journal WHERE run_id = @id",
        "TRUNCATE spine_journal",
        "ALTER TABLE spine_journal DISABLE TRIGGER spine_journal_no_update",
        "ALTER TABLE spine_journal DISABLE TRIGGER spine_journal_advance_heads",
        "DROP TRIGGER spine_journal_advance_heads ON spine_journal",
        "SET session_replication_role = replica",
        "UPDATE spine_journal_heads SET seq = 0 WHERE run_id = @id",
        "DELETE FROM spine_journal_heads WHERE run_id = @id",
        "INSERT INTO spine_journal_heads (run_id, seq, mac, state, updated_at) VALUES (@id || 'x', 0, '\\x00', 0, now())",
        "UPDATE spine_runs SET status = 1 WHERE run_id = @id",
        "UPDATE spine_runs SET result = '99' WHERE run_id = @id",
        "DELETE FROM spine_runs WHERE run_id = @id",
        "TRUNCATE spine_runs",
        "ALTER TABLE spine_runs DISABLE TRIGGER spine_runs_final",
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public async Task RuntimeLogin_ChangeToTheAuditTrail_IsRefusedAndChangesNothing(string sql)
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(1));
        await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));
        await using var data = NpgsqlDataSource.Create(fixture.Postgres.RuntimeConnectionString);
        await using var command = data.CreateCommand(sql);
        command.Parameters.AddWithValue("id", run.RunId);

        var error = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());

        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
        Assert.True((await fixture.Client.VerifyJournalAsync(run.RunId)).Intact);
        Assert.Equal((short)RunStatus.Completed, await fixture.Postgres.ScalarAsync<short>("SELECT status FROM spine_runs WHERE run_id = @id", ("id", run.RunId)));
    }

    [Fact]
    public async Task Owner_FinishedRunsIndexRowChangedWhileTriggersOn_IsRefused()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(1));
        await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));

        var error = await Assert.ThrowsAsync<PostgresException>(() =>
            fixture.Postgres.ScalarAsync<object>("UPDATE spine_runs SET status = 1 WHERE run_id = @id RETURNING 1", ("id", run.RunId)));

        Assert.Contains("may not change", error.MessageText, StringComparison.Ordinal);
    }
}
