using System.Reflection;
using Npgsql;

namespace Spine.Storage;

/// <summary>
/// Applies <c>infra/postgres/*.sql</c> (embedded in this assembly) in file-name order.
/// Every file is idempotent, so applying to an empty or an existing database is the same command.
/// </summary>
public static class SchemaMigrator
{
    private const long AdvisoryLockKey = 0x5350494E45; // "SPINE": serialises silos that migrate at once.

    /// <summary>The schema files, in the order they apply; with <paramref name="includeDemo"/>, the demo's tables after them.</summary>
    public static IReadOnlyList<(string Name, string Sql)> Scripts(bool includeDemo = false)
    {
        var assembly = typeof(SchemaMigrator).Assembly;
        var prefixes = includeDemo ? new[] { "Spine.Schema.", "Spine.DemoSchema." } : ["Spine.Schema."];
        return prefixes.SelectMany(prefix => assembly.GetManifestResourceNames()
                .Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && n.EndsWith(".sql", StringComparison.Ordinal))
                .Order(StringComparer.Ordinal)
                .Select(n => (n[prefix.Length..], Read(assembly, n))))
            .ToList();
    }

    /// <summary>
    /// Applies the schema with an owner connection, then, when <paramref name="runtimeLogin"/> is given,
    /// makes sure that login role exists and holds <c>spine_runtime</c>.
    /// </summary>
    /// <param name="ownerConnectionString">A connection as the owner of the schema.</param>
    /// <param name="runtimeLogin">A login role to create (if missing) and grant <c>spine_runtime</c>.</param>
    /// <param name="includeDemo">Also create the demo's tables (<c>infra/postgres/demo</c>), for a silo with the demo on.</param>
    /// <param name="cancellationToken">Cancels the migration (it then rolls back).</param>
    public static async Task ApplyAsync(string ownerConnectionString, string? runtimeLogin = null, bool includeDemo = false, CancellationToken cancellationToken = default)
    {
        await using var connection = new NpgsqlConnection(ownerConnectionString);
        await connection.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({AdvisoryLockKey})", connection, transaction))
        {
            await lockCommand.ExecuteNonQueryAsync(cancellationToken);
        }

        foreach (var (name, sql) in Scripts(includeDemo))
        {
            await using var command = new NpgsqlCommand(sql, connection, transaction);
            try
            {
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            catch (PostgresException e)
            {
                throw new InvalidOperationException($"Schema file {name} failed: {e.SqlState} {e.MessageText}", e);
            }
        }

        if (runtimeLogin is { Length: > 0 })
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
            await using var command = new NpgsqlCommand(sql, connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
    }

    private static string Read(Assembly assembly, string name)
    {
        using var stream = assembly.GetManifestResourceStream(name)!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
