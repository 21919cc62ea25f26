using Npgsql;
using Spine.Errors;

namespace Spine.Client;

/// <summary>How a client finds the Spine cluster (configuration section <c>SpineClient</c>).</summary>
public sealed class SpineClientOptions
{
    /// <summary>The configuration section name.</summary>
    public const string SectionName = "SpineClient";

    /// <summary>A PostgreSQL connection string with read access to the Orleans membership tables. Required.</summary>
    public string ConnectionString { get; set; } = "";

    /// <summary>The Orleans cluster id of the silos. Default <c>spine</c>.</summary>
    public string ClusterId { get; set; } = "spine";

    /// <summary>The Orleans service id of the silos. Default <c>spine</c>.</summary>
    public string ServiceId { get; set; } = "spine";

    /// <summary>How long one wait call to a run may block on the silo before the client asks again. Default 20 s.</summary>
    public TimeSpan WaitSlice { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>
    /// How long starting the client keeps trying to reach the cluster: the membership table in PostgreSQL and a
    /// silo gateway listed there. After it, the host's start fails with <see cref="ClusterUnavailableException"/>
    /// (no silo answered) or <see cref="Spine.Errors.StorageUnavailableException"/> (the database did not); a refused
    /// login fails at once. An attempt under way when the time is up finishes first (Npgsql's <c>Timeout</c>, default
    /// 15 s, bounds a database connection attempt). Between 1 second and 1 hour; default 30 s.
    /// </summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a start (or a replay) keeps trying while its outcome is unknown: the cluster or PostgreSQL is
    /// unreachable, or an acknowledgement was lost. Each try goes to the same run id, so a start that did land
    /// is returned, never repeated. Default 2 minutes.
    /// </summary>
    public TimeSpan StartRetryTimeout { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// The identity this client acts as when a call names none (<c>SpineClient:ActorId</c>): a service's own id,
    /// say. Null: calls carry no actor unless they name one.
    /// </summary>
    public string? ActorId { get; set; }

    /// <summary>The roles of <see cref="ActorId"/> (<c>SpineClient:ActorRoles</c>).</summary>
    public IList<string> ActorRoles { get; } = new List<string>();

    /// <summary>The configured actor, or null when <see cref="ActorId"/> is not set.</summary>
    public Identity.SpineActor? Actor => string.IsNullOrWhiteSpace(ActorId) ? null : new Identity.SpineActor(ActorId, ActorRoles.ToList());

    /// <summary>Throws with a message naming the setting when a value is missing or out of range.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ConnectionString))
        {
            throw new InvalidOperationException("SpineClient:ConnectionString is empty: set it to the PostgreSQL database the silos use for clustering.");
        }

        try
        {
            _ = new NpgsqlConnectionStringBuilder(ConnectionString);
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            // Npgsql's message names the offending keyword or position, never a value: safe to show.
            throw new InvalidOperationException($"SpineClient:ConnectionString is not a valid PostgreSQL connection string: {e.Message}", e);
        }

        if (string.IsNullOrWhiteSpace(ClusterId) || string.IsNullOrWhiteSpace(ServiceId))
        {
            throw new InvalidOperationException("SpineClient:ClusterId and SpineClient:ServiceId must be set.");
        }

        if (WaitSlice < TimeSpan.FromSeconds(1) || WaitSlice > TimeSpan.FromMinutes(5))
        {
            throw new InvalidOperationException($"SpineClient:WaitSlice is {WaitSlice}: it must be between 1 second and 5 minutes.");
        }

        if (StartRetryTimeout < TimeSpan.Zero || StartRetryTimeout > TimeSpan.FromHours(1))
        {
            throw new InvalidOperationException($"SpineClient:StartRetryTimeout is {StartRetryTimeout}: it must be between 0 and 1 hour.");
        }

        if (ConnectTimeout < TimeSpan.FromSeconds(1) || ConnectTimeout > TimeSpan.FromHours(1))
        {
            throw new InvalidOperationException($"SpineClient:ConnectTimeout is {ConnectTimeout}: it must be between 1 second and 1 hour.");
        }

        try
        {
            Actor?.Check();
        }
        catch (InvalidIdentifierException e)
        {
            throw new InvalidOperationException($"SpineClient:ActorId or SpineClient:ActorRoles: {e.Message}", e);
        }
    }
}
