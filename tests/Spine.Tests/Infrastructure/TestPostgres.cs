using Npgsql;
using Spine.Local.Postgres;

namespace Spine.Tests.Infrastructure;

/// <summary>
/// The one PostgreSQL server of a test run: the one named by <c>SPINE_TEST_CONNECTION</c> (an owner
/// connection; CI's script starts it), else a throwaway server this process starts and stops itself.
/// The schema is applied once; tests connect as the runtime login, exactly as a silo does.
/// </summary>
public sealed class TestPostgres
{
    private static readonly Lazy<Task<TestPostgres>> Shared = new(StartAsync);
    private static LocalPostgresServer? _local;

    private TestPostgres(string ownerConnectionString, string runtimeConnectionString)
    {
        OwnerConnectionString = ownerConnectionString;
        RuntimeConnectionString = runtimeConnectionString;
    }

    /// <summary>A connection as the schema owner (may alter and bypass privileges).</summary>
    public string OwnerConnectionString { get; }

    /// <summary>A connection as the runtime login (<c>spine_runtime</c> rights only).</summary>
    public string RuntimeConnectionString { get; }

    /// <summary>The shared server, started on first use.</summary>
    public static Task<TestPostgres> GetAsync() => Shared.Value;

    /// <summary>
    /// A new, empty database on the shared server with the schema applied, for a test whose silos must not see what
    /// other tests left in the shared one (its in-flight runs, its tool contracts).
    /// </summary>
    public static async Task<TestPostgres> CreateDatabaseAsync(string prefix)
    {
        var shared = await GetAsync();
        var name = $"{prefix}_{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 13, 63)];
        await using (var data = NpgsqlDataSource.Create(shared.OwnerConnectionString))
        {
            await using var command = data.CreateCommand($"CREATE DATABASE \"{name}\"");
            await command.ExecuteNonQueryAsync();
        }

        var owner = new NpgsqlConnectionStringBuilder(shared.OwnerConnectionString) { Database = name }.ConnectionString;
        return new TestPostgres(owner, await SpineDatabaseSetup.ApplySchemaAsync(owner, includeDemo: false));
    }

    /// <summary>Runs a scalar query as the owner.</summary>
    public async Task<T> ScalarAsync<T>(string sql, params (string Name, object Value)[] parameters)
    {
        await using var data = NpgsqlDataSource.Create(OwnerConnectionString);
        await using var command = data.CreateCommand(sql);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return (T)(await command.ExecuteScalarAsync())!;
    }

    private static async Task<TestPostgres> StartAsync()
    {
        var configured = Environment.GetEnvironmentVariable("SPINE_TEST_CONNECTION");
        string owner;
        if (!string.IsNullOrWhiteSpace(configured))
        {
            owner = configured;
        }
        else
        {
            var folder = Path.Combine(Path.GetTempPath(), "spine-tests-" + Guid.NewGuid().ToString("N")[..8]);
            _local = await LocalPostgresServer.StartAsync(new LocalPostgresOptions
            {
                DataDirectory = folder,
                DeleteOnStop = true,
                StopWithThisProcess = true,
                ServerSettings = new Dictionary<string, string> { ["max_connections"] = "300" },
            });
            owner = _local.ConnectionString;
            AppDomain.CurrentDomain.ProcessExit += (_, _) => _local.StopAsync().GetAwaiter().GetResult();
        }

        return new TestPostgres(owner, await SpineDatabaseSetup.ApplySchemaAsync(owner, includeDemo: true));
    }
}
