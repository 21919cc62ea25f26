using Microsoft.Extensions.Options;
using Npgsql;
using Spine.Errors;
using Spine.Hosting;

namespace Spine.Storage;

/// <summary>The silo's pooled PostgreSQL data source.</summary>
public sealed class SpineDatabase : IAsyncDisposable
{
    /// <summary>Creates the data source from <see cref="SpineOptions.ConnectionString"/>.</summary>
    public SpineDatabase(IOptions<SpineOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        DataSource = new NpgsqlDataSourceBuilder(Tune(options.Value.ConnectionString)).Build();
    }

    /// <summary>The data source.</summary>
    public NpgsqlDataSource DataSource { get; }

    /// <summary>
    /// Adds the settings Spine relies on unless the caller chose otherwise: statements are prepared
    /// automatically (every hot statement is a fixed text), which saves the parse on each append.
    /// </summary>
    public static string Tune(string connectionString)
    {
        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (ArgumentException e)
        {
            throw new StorageUnavailableException("configuration", $"the connection string is malformed: {e.Message}", e, transient: false);
        }

        if (builder.MaxAutoPrepare == 0)
        {
            builder.MaxAutoPrepare = 32;
            builder.AutoPrepareMinUsages = 2;
        }

        return builder.ConnectionString;
    }

    /// <summary>Turns a driver or server error into a typed Spine error, or returns null when it is not a storage failure.</summary>
    public static StorageUnavailableException? Classify(Exception e, string operation) => e switch
    {
        StorageUnavailableException s => s,
        PostgresException pg => new StorageUnavailableException(operation, $"{pg.SqlState}: {pg.MessageText}", pg, IsTransient(pg)),
        NpgsqlException n => new StorageUnavailableException(operation, n.Message, n, IsTransient(n)),
        System.Net.Sockets.SocketException or IOException or TimeoutException => new StorageUnavailableException(operation, e.Message, e),
        _ => null,
    };

    /// <summary>
    /// True when trying the same operation again later may succeed: the server is unreachable, starting up,
    /// shutting down or overloaded (SQLSTATE classes 08, 53, 57P and those Npgsql marks transient), or the
    /// connection broke. False when the server or the driver refused this particular operation.
    /// </summary>
    public static bool IsTransient(Exception e) => e switch
    {
        StorageUnavailableException s => s.IsTransient,
        PostgresException pg => pg.IsTransient
            || pg.SqlState.StartsWith("08", StringComparison.Ordinal)
            || pg.SqlState.StartsWith("53", StringComparison.Ordinal)
            || pg.SqlState is PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow
                or PostgresErrorCodes.QueryCanceled,
        NpgsqlException n => n.IsTransient || n.InnerException is System.Net.Sockets.SocketException or IOException or TimeoutException,
        System.Net.Sockets.SocketException or IOException or TimeoutException => true,
        _ => false,
    };

    /// <inheritdoc />
    public ValueTask DisposeAsync() => DataSource.DisposeAsync();
}
