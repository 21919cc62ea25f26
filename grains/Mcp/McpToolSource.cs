using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ModelContextProtocol.Protocol;
using NuGet.Versioning;
using Spine.Storage;
using Spine.Tools;

namespace Spine.Mcp;

/// <summary>
/// The tools of the configured MCP servers, as Spine tools. Each contract a server offers gets a version of its own,
/// agreed by every silo through <c>spine_tool_contracts</c>: the version recorded for its digest, or the next major
/// one. Loaded while the silo starts (before its tool registry is built); a server whose list changes later has its
/// new contracts registered as new versions, so runs that pinned the old one keep it (and fail if they call it once
/// the server no longer offers it), and new runs take the new one.
/// </summary>
public sealed partial class McpToolSource(IOptions<McpOptions> options, SpineDatabase database, IServiceProvider services, ILoggerFactory loggers) : IAsyncDisposable
{
    private readonly ILogger _logger = loggers.CreateLogger<McpToolSource>();
    private readonly List<McpServerConnection> _servers = [];
    private readonly SemaphoreSlim _versioning = new(1, 1);
    private readonly HashSet<string> _registered = new(StringComparer.Ordinal);
    private List<McpTool>? _tools;

    /// <summary>The tools as loaded at start-up.</summary>
    /// <exception cref="InvalidOperationException">Read before <see cref="LoadAsync"/> finished.</exception>
    public IReadOnlyList<McpTool> Tools => _tools ?? throw new InvalidOperationException("The MCP servers' tools are read while the silo starts; they are not loaded yet.");

    /// <summary>Whether <paramref name="tool"/> is (or was) a tool of a configured server, by its prefix.</summary>
    public bool Owns(string tool) => options.Value.Servers.Any(s => tool.StartsWith(s.Prefix, StringComparison.Ordinal));

    /// <summary>Connects to every server and reads its tools; a server that cannot be reached stops the silo, naming it.</summary>
    public async Task LoadAsync(CancellationToken cancellationToken)
    {
        if (options.Value.Problems().ToList() is { Count: > 0 } problems)
        {
            throw new InvalidOperationException("Invalid MCP servers: " + string.Join(" ", problems));
        }

        var tools = new List<McpTool>();
        foreach (var settings in options.Value.Servers)
        {
            var server = new McpServerConnection(settings, loggers);
            _servers.Add(server);
            server.ToolsRead = (listed, token) => RegisterAsync(server, listed, token);
            IList<ModelContextProtocol.Protocol.Tool> listed;
            try
            {
                listed = await server.ListAsync(cancellationToken);
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                throw new InvalidOperationException($"Spine:Mcp: the MCP server '{settings.Name}' could not be reached ({settings.Command ?? settings.Url?.ToString()}): {e.Message}", e);
            }

            tools.AddRange(await VersionAsync(server, listed, cancellationToken));
        }

        await _versioning.WaitAsync(cancellationToken);
        try
        {
            _registered.UnionWith(tools.Select(Key));
            _tools = tools;
        }
        finally
        {
            _versioning.Release();
        }

        // A change while the others loaded was read before the registry existed: read every server once more.
        foreach (var server in _servers)
        {
            server.QueueRefresh();
        }
    }

    private async Task RegisterAsync(McpServerConnection server, IList<ModelContextProtocol.Protocol.Tool> listed, CancellationToken cancellationToken)
    {
        if (_tools is null)
        {
            return;
        }

        var fresh = listed.Where(t => !_registered.Contains(Key(server.Settings.Prefix + t.Name, ToolCatalog.Digest(McpTool.Describe(server.Settings, t, "0.0.0"))))).ToList();
        if (fresh.Count == 0)
        {
            return;
        }

        var tools = await VersionAsync(server, fresh, cancellationToken);
        await _versioning.WaitAsync(cancellationToken);
        try
        {
            services.GetRequiredService<ToolRegistry>().Register(tools.Where(t => !_registered.Contains(Key(t))));
            _registered.UnionWith(tools.Select(Key));
        }
        finally
        {
            _versioning.Release();
        }

        LogToolsChanged(_logger, server.Settings.Name, string.Join(", ", tools.Select(t => $"{t.Definition.Name} {t.Definition.Version}")));
    }

    private static string Key(McpTool tool) => Key(tool.Definition.Name, tool.Digest);

    private static string Key(string name, byte[] digest) => name + "@" + Convert.ToHexString(digest);

    /// <summary>The server's tools, each at the version its contract has: recorded for its digest, or the next major (and recorded).</summary>
    private async Task<List<McpTool>> VersionAsync(McpServerConnection server, IList<ModelContextProtocol.Protocol.Tool> listed, CancellationToken cancellationToken)
    {
        await _versioning.WaitAsync(cancellationToken);
        try
        {
            var names = listed.Select(t => server.Settings.Prefix + t.Name).ToArray();
            for (var round = 1; ; round++)
            {
                var stored = await ToolCatalog.StoredAsync(database.DataSource, names, cancellationToken);
                var tools = listed.Select(tool =>
                {
                    var digest = ToolCatalog.Digest(McpTool.Describe(server.Settings, tool, "0.0.0"));
                    var name = server.Settings.Prefix + tool.Name;
                    var versions = stored.Values.Where(s => s.Definition.Name == name).ToList();
                    var known = versions.Where(s => s.Digest.AsSpan().SequenceEqual(digest))
                        .OrderBy(s => NuGetVersion.TryParse(s.Definition.Version, out var v) ? v : new NuGetVersion(0, 0, 0)).FirstOrDefault();
                    var next = versions.Select(s => NuGetVersion.TryParse(s.Definition.Version, out var v) ? v.Major : 0).DefaultIfEmpty(0).Max() + 1;
                    return new McpTool(server, tool, known?.Definition.Version ?? $"{next}.0.0");
                }).ToList();
                await ToolCatalog.RecordAsync(database.DataSource, tools.Select(t => t.Definition), cancellationToken);

                // Another silo may have given one of these versions to another contract meanwhile: then count again.
                var recorded = await ToolCatalog.StoredAsync(database.DataSource, names, cancellationToken);
                if (tools.All(t => recorded.TryGetValue((t.Definition.Name, t.Definition.Version), out var r) && r.Digest.AsSpan().SequenceEqual(t.Digest)))
                {
                    return tools;
                }

                if (round == 5)
                {
                    throw new InvalidOperationException($"MCP server '{server.Settings.Name}': its tools' versions could not be agreed with the other silos after {round} tries.");
                }
            }
        }
        finally
        {
            _versioning.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        foreach (var server in _servers)
        {
            try
            {
                await server.DisposeAsync();
            }
            catch (Exception e)
            {
                LogCloseFailed(_logger, e, server.Settings.Name);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "MCP server {Server}: closing it failed")]
    private static partial void LogCloseFailed(ILogger logger, Exception exception, string server);

    [LoggerMessage(Level = LogLevel.Information, Message = "MCP server {Server} changed its tools; registered {Tools}")]
    private static partial void LogToolsChanged(ILogger logger, string server, string tools);
}
