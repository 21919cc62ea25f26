using System.Reflection;
using EvolveDb;
using EvolveDb.Dialect;
using EvolveDb.Metadata;
using EvolveDb.Migration;
using Npgsql;

namespace Spine.Storage;

/// <summary>
/// Applies the versioned migrations of <c>infra/postgres/</c> (embedded in this assembly), each once, recording
/// each in a history table with its checksum. A migration that was applied and then edited is refused, naming
/// it; a new migration is a new file with the next number.
/// </summary>
public static class SchemaMigrator
{
    /// <summary>The history of the product schema: one row per applied migration of <c>infra/postgres/*.sql</c>.</summary>
    public const string HistoryTable = "spine_schema_history";

    /// <summary>The history of the demo's tables (<c>infra/postgres/demo/*.sql</c>), kept apart so the two numberings never meet.</summary>
    public const string DemoHistoryTable = "spine_demo_schema_history";

    // "SPINE": serialises silos that migrate at once. The re-run-everything migrator took the same key, so a
    // silo of the previous version migrating during a rolling upgrade waits too.
    private const long AdvisoryLockKey = 0x5350494E45;

    /// <summary>The schema files, in the order they apply; with <paramref name="includeDemo"/>, the demo's tables after them.</summary>
    public static IReadOnlyList<(string Name, string Sql)> Scripts(bool includeDemo = false) =>
        Sets(includeDemo).SelectMany(set => set.Scripts).ToList();

    /// <summary>
    /// Applies the migrations this database has not recorded yet with an owner connection, then, when
    /// <paramref name="runtimeLogin"/> is given, makes sure that login role exists and holds <c>spine_runtime</c>.
    /// </summary>
    /// <param name="ownerConnectionString">A connection as the owner of the schema.</param>
    /// <param name="runtimeLogin">A login role to create (if missing) and grant <c>spine_runtime</c>.</param>
    /// <param name="includeDemo">Also create the demo's tables (<c>infra/postgres/demo</c>), for a silo with the demo on.</param>
    /// <param name="cancellationToken">Cancels the wait for another migrating silo; a migration already running finishes or rolls back as a whole.</param>
    /// <returns>The migrations this call applied (none when the database was up to date).</returns>
    /// <exception cref="SchemaMigrationException">A migration failed, or one this database applied differs from the embedded file.</exception>
    public static Task<SchemaMigrationResult> ApplyAsync(string ownerConnectionString, string? runtimeLogin = null, bool includeDemo = false, CancellationToken cancellationToken = default) =>
        ApplyAsync(ownerConnectionString, Sets(includeDemo), runtimeLogin, cancellationToken);

    /// <summary>Applies <paramref name="sets"/> in order; the seam the tests use to apply edited or extra scripts.</summary>
    internal static async Task<SchemaMigrationResult> ApplyAsync(string ownerConnectionString, IReadOnlyList<MigrationSet> sets, string? runtimeLogin, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(ownerConnectionString);
        await using var connection = new NpgsqlConnection(ownerConnectionString);
        await connection.OpenAsync(cancellationToken);

        // A session lock, not a transaction's: each migration commits on its own, and the lock must span them all
        // and the grants. It is taken on the connection the migrations run on, so it ends with that connection.
        await ExecuteAsync(connection, $"SELECT pg_advisory_lock({AdvisoryLockKey})", cancellationToken);
        try
        {
            var applied = new List<string>();
            foreach (var set in sets)
            {
                cancellationToken.ThrowIfCancellationRequested();
                applied.AddRange(await Task.Run(() => Migrate(connection, set), cancellationToken));
            }

            if (runtimeLogin is { Length: > 0 })
            {
                await GrantRuntimeAsync(connection, runtimeLogin, cancellationToken);
            }

            return new SchemaMigrationResult(applied);
        }
        finally
        {
            // A broken connection has lost the lock with its session; unlocking it would only hide the error.
            if (connection.FullState == System.Data.ConnectionState.Open)
            {
                await ExecuteAsync(connection, $"SELECT pg_advisory_unlock({AdvisoryLockKey})", CancellationToken.None);
            }
        }
    }

    /// <summary>The product's set and, with <paramref name="includeDemo"/>, the demo's.</summary>
    internal static IReadOnlyList<MigrationSet> Sets(bool includeDemo)
    {
        var assembly = typeof(SchemaMigrator).Assembly;
        var product = new MigrationSet("schema", HistoryTable, Embedded(assembly, "Spine.Schema."));
        return includeDemo ? [product, new MigrationSet("demo schema", DemoHistoryTable, Embedded(assembly, "Spine.DemoSchema."))] : [product];
    }

    private static List<string> Migrate(NpgsqlConnection connection, MigrationSet set)
    {
        // The lock above serialises silos; Evolve's own cluster lock (a fixed advisory key polled every 3 s) is off.
        var evolve = new Evolve(connection, dbms: DBMS.PostgreSQL)
        {
            MetadataTableName = set.HistoryTable,
            MigrationLoader = new Loader(set),
            EnableClusterMode = false,
            IsEraseDisabled = true,
            MustEraseOnValidationError = false,
            OutOfOrder = false,
        };
        try
        {
            evolve.Migrate();
        }
        catch (EvolveValidationException e)
        {
            var script = set.Scripts.Select(s => s.Name).FirstOrDefault(name => e.Message.Contains(name, StringComparison.Ordinal));
            throw new SchemaMigrationException(
                set.Name,
                script,
                $"The {set.Name} of this database does not match the embedded migrations ({set.HistoryTable}): {e.Message} " +
                $"A migration is never edited once applied{(script is null ? "" : $": put {script} back as it was")}, and a change is a new migration with the next number (infra/postgres/README.md).",
                e);
        }
        catch (EvolveException e)
        {
            var script = set.Scripts.Select(s => s.Name).FirstOrDefault(name => e.Message.Contains(name, StringComparison.Ordinal));
            var detail = e.InnerException is PostgresException pg ? $"{pg.SqlState} {pg.MessageText}" : e.InnerException?.Message ?? e.Message;
            throw new SchemaMigrationException(set.Name, script, $"{(script is null ? $"The {set.Name}" : $"Schema migration {script}")} failed: {detail}", e);
        }

        return evolve.AppliedMigrations;
    }

    private static async Task GrantRuntimeAsync(NpgsqlConnection connection, string runtimeLogin, CancellationToken cancellationToken)
    {
        var quoted = new NpgsqlCommandBuilder().QuoteIdentifier(runtimeLogin);
        var sql = $"""
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{runtimeLogin.Replace("'", "''", StringComparison.Ordinal)}') THEN
                    CREATE ROLE {quoted} LOGIN;
                END IF;
            END
            $$;
            GRANT spine_runtime TO {quoted};
            """;
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var command = new NpgsqlCommand(sql, connection, transaction))
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static List<(string Name, string Sql)> Embedded(Assembly assembly, string prefix) =>
        assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && n.EndsWith(".sql", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .Select(n => (n[prefix.Length..], Read(assembly, n)))
            .ToList();

    private static string Read(Assembly assembly, string name)
    {
        using var stream = assembly.GetManifestResourceStream(name)!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>Feeds Evolve the set's scripts, versioned by their file names (<c>0005_index_order.sql</c> is version 5).</summary>
    private sealed class Loader(MigrationSet set) : IMigrationLoader
    {
        public IEnumerable<MigrationScript> GetMigrations()
        {
            var migrations = set.Scripts.Select(s => new Script(set.Name, s.Name, s.Sql)).Order().ToList();
            var twice = migrations.GroupBy(m => m.Version).FirstOrDefault(g => g.Count() > 1);
            return twice is null
                ? migrations
                : throw new SchemaMigrationException(set.Name, twice.First().Name, $"Schema migrations {string.Join(" and ", twice.Select(m => m.Name))} have the same version: each migration needs its own number.");
        }

        public IEnumerable<MigrationScript> GetRepeatableMigrations() => [];
    }

    private sealed class Script(string set, string name, string sql) : MigrationScript(VersionOf(set, name), DescriptionOf(name), name, sql, MetadataType.Migration)
    {
        private static string VersionOf(string set, string name)
        {
            var separator = name.IndexOf('_', StringComparison.Ordinal);
            var version = separator > 0 ? name[..separator] : "";
            return version.Length > 0 && version.All(char.IsAsciiDigit)
                ? version
                : throw new SchemaMigrationException(set, name, $"Schema migration {name} is not named <number>_<description>.sql, so it has no version.");
        }

        private static string DescriptionOf(string name) => Path.GetFileNameWithoutExtension(name)[(name.IndexOf('_', StringComparison.Ordinal) + 1)..];
    }
}

/// <summary>One independently versioned set of migrations and the table that records it.</summary>
/// <param name="Name">What the set is, for messages.</param>
/// <param name="HistoryTable">The table recording the applied migrations of this set.</param>
/// <param name="Scripts">The set's scripts; file names start with their version.</param>
internal sealed record MigrationSet(string Name, string HistoryTable, IReadOnlyList<(string Name, string Sql)> Scripts);

/// <summary>What one <see cref="SchemaMigrator.ApplyAsync(string, string?, bool, CancellationToken)"/> did.</summary>
/// <param name="Applied">The migrations applied by this call, in order (empty when the database was up to date).</param>
public sealed record SchemaMigrationResult(IReadOnlyList<string> Applied);
