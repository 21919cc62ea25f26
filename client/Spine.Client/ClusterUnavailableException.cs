using Spine.Errors;

namespace Spine.Client;

/// <summary>
/// The client could not reach a silo of its cluster within <see cref="SpineClientOptions.ConnectTimeout"/>: none is
/// registered as active in the membership table under these cluster and service ids, or none that is accepts a
/// connection. Raised by the client while it starts, never by a silo.
/// </summary>
public sealed class ClusterUnavailableException : SpineException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="clusterId">The cluster id the client looked for.</param>
    /// <param name="serviceId">The service id the client looked for.</param>
    /// <param name="waited">How long the client kept trying.</param>
    /// <param name="innerException">The last attempt's failure.</param>
    public ClusterUnavailableException(string clusterId, string serviceId, TimeSpan waited, Exception? innerException = null)
        : base($"No silo of cluster '{clusterId}' (service '{serviceId}') could be reached within {waited.TotalSeconds:0.#} s" +
               (innerException is null ? "" : $"; last error: {innerException.Message.TrimEnd('.')}") +
               ". Check that a silo is running and that its Silo:ClusterId and Silo:ServiceId match these.", innerException)
    {
        ClusterId = clusterId;
        ServiceId = serviceId;
        Waited = waited;
    }

    /// <summary>The cluster id the client looked for.</summary>
    public string ClusterId { get; }

    /// <summary>The service id the client looked for.</summary>
    public string ServiceId { get; }

    /// <summary>How long the client kept trying.</summary>
    public TimeSpan Waited { get; }

    /// <inheritdoc />
    public override string Kind => "cluster_unavailable";
}
