namespace Spine.Local.Postgres;

/// <summary>
/// Settings for <see cref="LocalPostgresServer.StartAsync"/>.
/// </summary>
public sealed class LocalPostgresOptions
{
    /// <summary>
    /// Folder holding the cluster; created if missing. The cluster itself lives in its <c>pgdata</c>
    /// subfolder, the server log in <c>postgres.log</c> and the Unix socket in the folder itself.
    /// </summary>
    public required string DataDirectory { get; init; }

    /// <summary>Loopback TCP port to listen on; 0 picks a free one.</summary>
    public int Port { get; init; }

    /// <summary>
    /// When true, <see cref="LocalPostgresServer.StopAsync"/> stops the server even if it was already
    /// running, and deletes <see cref="DataDirectory"/>. Meant for throwaway test clusters.
    /// </summary>
    public bool DeleteOnStop { get; init; }

    /// <summary>
    /// When true, a server this call starts is stopped (and, with <see cref="DeleteOnStop"/>, its folder deleted)
    /// once this process is gone, even when it is killed before <see cref="LocalPostgresServer.StopAsync"/> runs:
    /// a test run that crashes or is killed leaves no server behind. Default false.
    /// </summary>
    public bool StopWithThisProcess { get; init; }

    /// <summary>Database that <see cref="LocalPostgresServer.ConnectionString"/> points at; created if missing.</summary>
    public string Database { get; init; } = "spine";

    /// <summary>
    /// Extra server settings passed as <c>-c name=value</c>, e.g. <c>max_connections</c>. They are merged
    /// over the defaults (<c>max_connections=200</c>, <c>shared_buffers=128MB</c>).
    /// </summary>
    public IReadOnlyDictionary<string, string>? ServerSettings { get; init; }
}
