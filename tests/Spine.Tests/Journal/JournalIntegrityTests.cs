using Npgsql;
using Spine.Storage;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Journal;

[Collection(ClusterCollection.Name)]
public sealed class JournalIntegrityTests(ClusterFixture fixture)
{
    [Fact]
    public async Task RuntimeRole_UpdateOrDeleteJournal_IsRefused()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(1));
        await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));
        await using var data = NpgsqlDataSource.Create(fixture.Postgres.RuntimeConnectionString);

        await using var update = data.CreateCommand("UPDATE spine_journal SET payload = '1' WHERE run_id = @id");
        update.Parameters.AddWithValue("id", run.RunId);
        var updateError = await Assert.ThrowsAsync<PostgresException>(() => update.ExecuteNonQueryAsync());
        await using var delete = data.CreateCommand("DELETE FROM spine_journal WHERE run_id = @id");
        delete.Parameters.AddWithValue("id", run.RunId);
        var deleteError = await Assert.ThrowsAsync<PostgresException>(() => delete.ExecuteNonQueryAsync());

        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, updateError.SqlState);
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, deleteError.SqlState);
    }

    [Fact]
    public async Task Owner_UpdateJournalWhileTriggerOn_IsRefused()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(1));
        await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));

        var error = await Assert.ThrowsAsync<PostgresException>(() =>
            fixture.Postgres.ScalarAsync<object>("UPDATE spine_journal SET payload = '1' WHERE run_id = @id RETURNING 1", ("id", run.RunId)));

        Assert.Contains("append-only", error.MessageText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task VerifyJournal_RowEditedBehindTheTrigger_ReportsFirstBrokenRow()
    {
        var run = await fixture.Client.StartAsync("test.steps", new StepsInput(3));
        await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));
        Assert.True((await fixture.Client.VerifyJournalAsync(run.RunId)).Intact);

        await using (var data = NpgsqlDataSource.Create(fixture.Postgres.OwnerConnectionString))
        await using (var batch = data.CreateBatch())
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand("ALTER TABLE spine_journal DISABLE TRIGGER spine_journal_no_update"));
            var tamper = new NpgsqlBatchCommand("UPDATE spine_journal SET payload = '20' WHERE run_id = @id AND seq = 2");
            tamper.Parameters.AddWithValue("id", run.RunId);
            batch.BatchCommands.Add(tamper);
            batch.BatchCommands.Add(new NpgsqlBatchCommand("ALTER TABLE spine_journal ENABLE TRIGGER spine_journal_no_update"));
            await batch.ExecuteNonQueryAsync();
        }

        var check = await fixture.Client.VerifyJournalAsync(run.RunId);

        Assert.False(check.Intact);
        Assert.Equal(2, check.FirstBadSeq);
        Assert.Contains("do not match its hash", check.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MigrateCommand_EmptyDatabaseThenAgain_AppliesSchemaOnce()
    {
        var database = "migrate_" + Guid.NewGuid().ToString("N")[..10];
        await fixture.Postgres.ScalarAsync<object>($"CREATE DATABASE {database}");
        var target = new NpgsqlConnectionStringBuilder(fixture.Postgres.OwnerConnectionString) { Database = database }.ConnectionString;

        var first = await MigrateAsync(target);
        var second = await MigrateAsync(target);

        Assert.Equal(0, first.Exit);
        Assert.Equal(0, second.Exit);
        Assert.Contains("0001_orleans.sql, 0002_spine.sql", first.Output, StringComparison.Ordinal);
        await using var data = NpgsqlDataSource.Create(target);
        await using var count = data.CreateCommand("SELECT count(*) FROM orleansquery");
        Assert.Equal(20L, (long)(await count.ExecuteScalarAsync())!);
        await using var role = data.CreateCommand("SELECT pg_has_role('spine_silo', 'spine_runtime', 'member')");
        Assert.True((bool)(await role.ExecuteScalarAsync())!);
    }

    private static async Task<(int Exit, string Output)> MigrateAsync(string connectionString)
    {
        var silo = Local.Silos.SiloExecutable.Locate();
        using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(
            "dotnet", [silo, "migrate", "--connection", connectionString, "--runtime-login", "spine_silo"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return (process.ExitCode, await output + await error);
    }
}
