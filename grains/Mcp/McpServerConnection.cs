using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using Microsoft.Extensions.Logging;

namespace Spine.Mcp;

/// <summary>
/// The silo's connection to one MCP server: made on first use and again after it breaks (a stdio server is started
/// again), with the server's tool list read on every connect, when the server says it changed, and every
/// <see cref="McpServerSettings.RefreshInterval"/>. A changed list goes to <see cref="ToolsChanged"/>.
/// </summary>
public sealed partial class McpServerConnection : IAsyncDisposable
{
    private readonly SemaphoreSlim _connecting = new(1, 1);
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private McpClient? _client;
    private volatile Dictionary<string, byte[]> _digests = new(StringComparer.Ordinal);
    private Task? _refreshLoop;

    internal McpServerConnection(McpServerSettings settings, ILoggerFactory loggers)
    {
        Settings = settings;
        _loggers = loggers;
        _logger = loggers.CreateLogger<McpServerConnection>();
    }

    /// <summary>The server's settings.</summary>
    public McpServerSettings Settings { get; }

    /// <summary>Called with the server's tools whenever a read of them differs from the one before.</summary>
    internal Func<IList<Tool>, CancellationToken, Task>? ToolsChanged { get; set; }

    /// <summary>Whether the server offers <paramref name="tool"/> with the contract of <paramref name="digest"/> now.</summary>
    internal bool Offers(string tool, byte[] digest) =>
        _digests.TryGetValue(tool, out var current) && current.AsSpan().SequenceEqual(digest);

    /// <summary>The connection, connecting (and reading the tools) first when there is none.</summary>
    internal async Task<McpClient> ClientAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _client) is { } connected)
        {
            return connected;
        }

        await _connecting.WaitAsync(cancellationToken);
        try
        {
            if (_client is { } raced)
            {
                return raced;
            }

            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
            deadline.CancelAfter(Settings.ConnectTimeout);
            var client = await McpClient.CreateAsync(Transport(), new McpClientOptions
            {
                ClientInfo = new Implementation { Name = "spine", Version = typeof(McpServerConnection).Assembly.GetName().Version?.ToString() ?? "1.0.0" },
                Handlers = new McpClientHandlers
                {
                    NotificationHandlers = [new(NotificationMethods.ToolListChangedNotification, (_, _) =>
                    {
                        _ = Task.Run(() => RefreshQuietlyAsync(_stopping.Token));
                        return ValueTask.CompletedTask;
                    })],
                },
            }, _loggers, deadline.Token);
            await ReadToolsAsync(client, deadline.Token);
            Volatile.Write(ref _client, client);
            _refreshLoop ??= Settings.RefreshInterval is { } every ? Task.Run(() => RefreshLoopAsync(every)) : null;
            return client;
        }
        finally
        {
            _connecting.Release();
        }
    }

    /// <summary>Forgets a connection that failed, so the next call connects again.</summary>
    internal void Drop(McpClient broken)
    {
        if (Interlocked.CompareExchange(ref _client, null, broken) == broken)
        {
            LogDropped(_logger, Settings.Name);
            _ = broken.DisposeAsync().AsTask().ContinueWith(t => _ = t.Exception, TaskScheduler.Default);
        }
    }

    /// <summary>Reads the server's tools now (connecting if need be).</summary>
    internal async Task<IList<Tool>> ListAsync(CancellationToken cancellationToken)
    {
        var client = await ClientAsync(cancellationToken);
        return await ReadToolsAsync(client, cancellationToken);
    }

    private async Task<IList<Tool>> ReadToolsAsync(McpClient client, CancellationToken cancellationToken)
    {
        var listed = await client.ListToolsAsync(cancellationToken: cancellationToken);
        var tools = listed.Select(t => t.ProtocolTool).ToList();
        var digests = tools.ToDictionary(t => t.Name, t => Tools.ToolCatalog.Digest(McpTool.Describe(Settings, t, "0.0.0")), StringComparer.Ordinal);
        var before = _digests;
        var changed = digests.Count != before.Count || digests.Any(d => !before.TryGetValue(d.Key, out var was) || !was.AsSpan().SequenceEqual(d.Value));
        if (changed && ToolsChanged is { } handler)
        {
            // Registered before the digests say so: a call never finds the server's contract without its version.
            await handler(tools, cancellationToken);
        }

        _digests = digests;
        return tools;
    }

    private async Task RefreshQuietlyAsync(CancellationToken cancellationToken)
    {
        try
        {
            await ListAsync(cancellationToken);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            LogRefreshFailed(_logger, e, Settings.Name);
            if (Volatile.Read(ref _client) is { } client)
            {
                Drop(client);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task RefreshLoopAsync(TimeSpan every)
    {
        using var timer = new PeriodicTimer(every);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token))
            {
                await RefreshQuietlyAsync(_stopping.Token);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private IClientTransport Transport() => Settings.Url is { } url
        ? new HttpClientTransport(new HttpClientTransportOptions { Endpoint = url, Name = Settings.Name })
        : new StdioClientTransport(new StdioClientTransportOptions
        {
            Name = Settings.Name,
            Command = Settings.Command!,
            Arguments = Settings.Arguments,
            WorkingDirectory = Settings.WorkingDirectory,
            EnvironmentVariables = Settings.Environment.ToDictionary(e => e.Key, e => (string?)e.Value),
        });

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        if (Interlocked.Exchange(ref _client, null) is { } client)
        {
            await client.DisposeAsync();
        }

        if (_refreshLoop is { } loop)
        {
            await loop;
        }

        _stopping.Dispose();
        _connecting.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "MCP server {Server}: the connection failed; the next call connects again")]
    private static partial void LogDropped(ILogger logger, string server);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MCP server {Server}: reading its tools failed")]
    private static partial void LogRefreshFailed(ILogger logger, Exception exception, string server);
}
