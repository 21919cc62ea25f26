using Npgsql;
using Spine.Local.Postgres;
using Spine.Storage;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Storage;

/// <summary>Versioned migrations on real PostgreSQL, each test in a database of its own.</summary>
public sealed class SchemaMigratorTests : IAsyncLifetime
{
    private TestPostgres _server = null!;
    private string _database = null!;
    private string _target = null!;

    public async Task InitializeAsync()
    {
        _server = await TestPostgres.GetAsync();
        _database = "migrations_" + Guid.NewGuid().ToString("N")[..12];
        await _server.ScalarAsync<object>($"CREATE DATABASE {_database}");
        _target = new NpgsqlConnectionStringBuilder(_server.OwnerConnectionString) { Database = _database }.ConnectionString;
    }

    public async Task DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await _server.ScalarAsync<object>($"DROP DATABASE IF EXISTS {_database} WITH (FORCE)");
    }

    [Fact]
    public async Task ApplyAsync_FreshDatabase_AppliesEveryMigrationAndRecordsIt()
    {
        var result = await SchemaMigrator.ApplyAsync(_target, SpineDatabaseSetup.RuntimeLogin);

        var names = SchemaMigrator.Scripts().Select(s => s.Name).ToList();
        Assert.Equal(names, result.Applied);
        Assert.Equal(names, await HistoryAsync(SchemaMigrator.HistoryTable));
        Assert.Equal(20L, await ScalarAsync<long>("SELECT count(*) FROM orleansquery"));
        Assert.True(await ScalarAsync<bool>($"SELECT pg_has_role('{SpineDatabaseSetup.RuntimeLogin}', 'spine_runtime', 'member')"));
    }

    [Fact]
    public async Task ApplyAsync_Again_AppliesNothing()
    {
        await SchemaMigrator.ApplyAsync(_target, SpineDatabaseSetup.RuntimeLogin, includeDemo: true);

        var second = await SchemaMigrator.ApplyAsync(_target, SpineDatabaseSetup.RuntimeLogin, includeDemo: true);

        Assert.Empty(second.Applied);
        Assert.Equal(SchemaMigrator.Scripts().Select(s => s.Name), await HistoryAsync(SchemaMigrator.HistoryTable));
    }

    [Fact]
    public async Task ApplyAsync_AppliedScriptEdited_IsRefusedNamingIt()
    {
        await SchemaMigrator.ApplyAsync(_target);
        var edited = SchemaMigrator.Sets(includeDemo: false)
            .Select(set => set with
            {
                Scripts = set.Scripts.Select(s => s.Name == "0002_spine.sql" ? (s.Name, s.Sql + "\n-- edited after it was applied\n") : s).ToList(),
            })
            .ToList();

        var error = await Assert.ThrowsAsync<SchemaMigrationException>(() => SchemaMigrator.ApplyAsync(_target, edited, runtimeLogin: null, CancellationToken.None));

        Assert.Equal("0002_spine.sql", error.Script);
        Assert.Contains("0002_spine.sql", error.Message, StringComparison.Ordinal);
        Assert.Contains("checksum", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ApplyAsync_NewMigrationAdded_AppliesOnlyIt()
    {
        await SchemaMigrator.ApplyAsync(_target);
        var product = SchemaMigrator.Sets(includeDemo: false)[0];
        var extended = product with { Scripts = [.. product.Scripts, ("0099_later.sql", "CREATE TABLE spine_later (id integer NOT NULL);")] };

        var result = await SchemaMigrator.ApplyAsync(_target, [extended], runtimeLogin: null, CancellationToken.None);

        Assert.Equal(["0099_later.sql"], result.Applied);
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM spine_later"));
    }

    [Fact]
    public async Task ApplyAsync_FailingMigration_NamesItAndKeepsTheEarlierOnes()
    {
        var product = SchemaMigrator.Sets(includeDemo: false)[0];
        var broken = product with { Scripts = [.. product.Scripts, ("0099_broken.sql", "CREATE TABLE spine_broken (id no_such_type);")] };

        var error = await Assert.ThrowsAsync<SchemaMigrationException>(() => SchemaMigrator.ApplyAsync(_target, [broken], runtimeLogin: null, CancellationToken.None));

        Assert.Equal("0099_broken.sql", error.Script);
        Assert.Contains("42704", error.Message, StringComparison.Ordinal);
        Assert.Equal(product.Scripts.Select(s => s.Name), await HistoryAsync(SchemaMigrator.HistoryTable));
    }

    [Fact]
    public async Task ApplyAsync_TwoAtOnce_BothSucceedAndEachMigrationAppliesOnce()
    {
        var first = SchemaMigrator.ApplyAsync(_target, SpineDatabaseSetup.RuntimeLogin, includeDemo: true);
        var second = SchemaMigrator.ApplyAsync(_target, SpineDatabaseSetup.RuntimeLogin, includeDemo: true);

        var results = await Task.WhenAll(first, second);

        var all = SchemaMigrator.Scripts(includeDemo: true).Select(s => s.Name).ToList();
        Assert.Contains(results, r => r.Applied.Count == 0);
        Assert.Equal(all, results.SelectMany(r => r.Applied));
        Assert.Equal(SchemaMigrator.Scripts().Select(s => s.Name), await HistoryAsync(SchemaMigrator.HistoryTable));
    }

    [Fact]
    public async Task ApplyAsync_WithoutDemo_CreatesNoDemoTablesUntilAskedFor()
    {
        await SchemaMigrator.ApplyAsync(_target);
        Assert.False(await ScalarAsync<bool>("SELECT to_regclass('spine_demo_ledger') IS NOT NULL"));
        Assert.False(await ScalarAsync<bool>($"SELECT to_regclass('{SchemaMigrator.DemoHistoryTable}') IS NOT NULL"));

        var result = await SchemaMigrator.ApplyAsync(_target, includeDemo: true);

        Assert.Equal(["0001_demo_tables.sql"], result.Applied);
        Assert.True(await ScalarAsync<bool>("SELECT to_regclass('spine_demo_ledger') IS NOT NULL"));
        Assert.Equal(["0001_demo_tables.sql"], await HistoryAsync(SchemaMigrator.DemoHistoryTable));
    }

    [Fact]
    public async Task ApplyAsync_DatabaseOfTheRerunEverythingScheme_RecordsTheScriptsAndKeepsItsData()
    {
        // What the migrator before versioning left: every script of the time (0001-0005) run, nothing recorded.
        await using (var data = NpgsqlDataSource.Create(_target))
        {
            foreach (var (_, sql) in SchemaMigrator.Scripts(includeDemo: true).Where(s => s.Name.StartsWith("0001_demo", StringComparison.Ordinal) || string.CompareOrdinal(s.Name, "0006") < 0))
            {
                await using var command = data.CreateCommand(sql);
                await command.ExecuteNonQueryAsync();
            }

            await using var insert = data.CreateCommand(
                "INSERT INTO spine_runs (run_id, workflow_type, workflow_version, status, created_at, updated_at) VALUES ('kept', 't', 1, 2, now(), now())");
            await insert.ExecuteNonQueryAsync();
            // A journal of the unkeyed chain: the keyed chain's migration anchors it with a legacy mark.
            await using var row = data.CreateCommand(
                "INSERT INTO spine_journal (run_id, seq, kind, name, ok, recorded_at, prev_hash, hash) VALUES ('kept', 0, 0, 'RunStarted', true, now(), '\\x00', '\\x01')");
            await row.ExecuteNonQueryAsync();
        }

        var result = await SchemaMigrator.ApplyAsync(_target, SpineDatabaseSetup.RuntimeLogin, includeDemo: true);

        Assert.Equal(SchemaMigrator.Scripts(includeDemo: true).Select(s => s.Name), result.Applied);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM spine_runs WHERE run_id = 'kept'"));
        Assert.Equal(1, await ScalarAsync<int>("SELECT legacy_rows FROM spine_journal_heads WHERE run_id = 'kept'"));
        Assert.Empty((await SchemaMigrator.ApplyAsync(_target, SpineDatabaseSetup.RuntimeLogin, includeDemo: true)).Applied);
    }

    /// <summary>The migrations a history table records (type 0 is Evolve's "migration" row; a failed one stays recorded with success false).</summary>
    private async Task<List<string>> HistoryAsync(string table)
    {
        await using var data = NpgsqlDataSource.Create(_target);
        await using var command = data.CreateCommand($"SELECT name FROM {table} WHERE type = 0 AND success ORDER BY id");
        await using var reader = await command.ExecuteReaderAsync();
        var names = new List<string>();
        while (await reader.ReadAsync())
        {
            names.Add(reader.GetString(0));
        }

        return names;
    }

    private async Task<T> ScalarAsync<T>(string sql)
    {
        await using var data = NpgsqlDataSource.Create(_target);
        await using var command = data.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}
