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
            throw new StorageUnavailableException("configuration", $"the connection string is malformed: {e.Message}", e);
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
        PostgresException pg => new StorageUnavailableException(operation, $"{pg.SqlState}: {pg.MessageText}", pg),
        NpgsqlException n => new StorageUnavailableException(operation, n.Message, n),
        System.Net.Sockets.SocketException s => new StorageUnavailableException(operation, s.Message, s),
        TimeoutException t => new StorageUnavailableException(operation, t.Message, t),
        _ => null,
    };

    /// <inheritdoc />
    public ValueTask DisposeAsync() => DataSource.DisposeAsync();
}
