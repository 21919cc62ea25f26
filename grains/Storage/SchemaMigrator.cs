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

    /// <summary>The schema files, in the order they apply.</summary>
    public static IReadOnlyList<(string Name, string Sql)> Scripts()
    {
        var assembly = typeof(SchemaMigrator).Assembly;
        return assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith("Spine.Schema.", StringComparison.Ordinal) && n.EndsWith(".sql", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .Select(n => (n["Spine.Schema.".Length..], Read(assembly, n)))
            .ToList();
    }

    /// <summary>
    /// Applies the schema with an owner connection, then, when <paramref name="runtimeLogin"/> is given,
    /// makes sure that login role exists and holds <c>spine_runtime</c>.
    /// </summary>
    public static async Task ApplyAsync(string ownerConnectionString, string? runtimeLogin = null, CancellationToken cancellationToken = default)
    {
        await using var connection = new NpgsqlConnection(ownerConnectionString);
        await connection.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({AdvisoryLockKey})", connection, transaction))
        {
            await lockCommand.ExecuteNonQueryAsync(cancellationToken);
        }

        foreach (var (name, sql) in Scripts())
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
