using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Npgsql;
using Orleans.Runtime.Messaging;
using Spine.Errors;

namespace Spine.Client;

/// <summary>
/// Bounds how long the Orleans client tries to connect when it starts. Orleans' own filter retries a missing
/// gateway with a growing delay for minutes, and lets a database error escape as a raw driver exception.
/// This one retries what may heal (no gateway yet, a refused connection, a database that is restarting) until
/// <see cref="SpineClientOptions.ConnectTimeout"/> has passed since the client began connecting, then throws a
/// typed error instead of answering "don't retry": Orleans lets an exception from the filter escape
/// <c>StartAsync</c>, where answering false would rethrow the attempt's own exception.
/// </summary>
internal sealed class ClusterConnectRetryFilter : IClientConnectionRetryFilter
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);
    private readonly SpineClientOptions _options;
    private readonly TimeProvider _time;

    // Orleans resolves the filter as the client starts connecting, so construction marks the start.
    private readonly long _started;

    public ClusterConnectRetryFilter(IOptions<SpineClientOptions> options, TimeProvider time)
    {
        _options = options.Value;
        _time = time;
        _started = time.GetTimestamp();
    }

    public async Task<bool> ShouldRetryConnectionAttempt(Exception exception, CancellationToken cancellationToken)
    {
        var waited = _time.GetElapsedTime(_started);
        var left = _options.ConnectTimeout - waited;
        if (exception is NpgsqlException storage)
        {
            if (!storage.IsTransient || left <= TimeSpan.Zero)
            {
                var detail = storage is PostgresException refused ? $"{refused.SqlState}: {refused.MessageText}" : storage.Message;
                throw new StorageUnavailableException("the client's read of the membership table", detail, storage, storage.IsTransient);
            }
        }
        else if (exception is SiloUnavailableException or ConnectionFailedException or OrleansMessageRejectionException or TimeoutException or SocketException)
        {
            if (left <= TimeSpan.Zero)
            {
                throw new ClusterUnavailableException(_options.ClusterId, _options.ServiceId, waited, exception);
            }
        }
        else
        {
            return false;
        }

        await Task.Delay(left < RetryDelay ? left : RetryDelay, _time, cancellationToken);
        return true;
    }
}
