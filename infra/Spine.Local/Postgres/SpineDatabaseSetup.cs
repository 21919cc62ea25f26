using Npgsql;
using Spine.Storage;

namespace Spine.Local.Postgres;

/// <summary>
/// Readies a database for silos the way every local set-up does (the embedded default, the demo, tests, the
/// benchmark): the schema applied as the owner, and silos connecting as <see cref="RuntimeLogin"/>.
/// </summary>
public static class SpineDatabaseSetup
{
    /// <summary>The login role silos use on a local database (a member of <c>spine_runtime</c>).</summary>
    public const string RuntimeLogin = "spine_silo";

    /// <summary>Applies the schema (and the demo's tables when asked) and returns the runtime connection string.</summary>
    /// <param name="ownerConnectionString">A connection as the schema owner.</param>
    /// <param name="includeDemo">Also create the demo's tables.</param>
    /// <param name="cancellationToken">Cancels the migration.</param>
    public static async Task<string> ApplySchemaAsync(string ownerConnectionString, bool includeDemo, CancellationToken cancellationToken = default)
    {
        await SchemaMigrator.ApplyAsync(ownerConnectionString, RuntimeLogin, includeDemo, cancellationToken);
        return RuntimeConnectionString(ownerConnectionString);
    }

    /// <summary>The owner connection string with <see cref="RuntimeLogin"/> as the user (and no password: local trust).</summary>
    public static string RuntimeConnectionString(string ownerConnectionString) =>
        new NpgsqlConnectionStringBuilder(ownerConnectionString) { Username = RuntimeLogin, Password = null }.ConnectionString;
}
