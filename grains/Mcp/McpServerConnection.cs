using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using Microsoft.Extensions.Logging;

namespace Spine.Mcp;

/// <summary>
/// The silo's connection to one MCP server: made on first use and again after it breaks (a stdio server is started
/// again), with the server's tool list read on every connect, when the server says it changed, and every
/// <see cref="McpServerSettings.RefreshInterval"/>. Every read goes to <see cref="ToolsRead"/> before it counts.
/// </summary>
public sealed partial class McpServerConnection : IAsyncDisposable
{
    private readonly SemaphoreSlim _connecting = new(1, 1);
    private readonly SemaphoreSlim _reading = new(1, 1);
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private McpClient? _client;
    private volatile Dictionary<string, byte[]> _digests = new(StringComparer.Ordinal);
    private Task? _refreshLoop;
    private int _refreshQueued;
    private bool _disposed;

    internal McpServerConnection(McpServerSettings settings, ILoggerFactory loggers)
    {
        Settings = settings;
        _loggers = loggers;
        _logger = loggers.CreateLogger<McpServerConnection>();
    }

    /// <summary>The server's settings.</summary>
    public McpServerSettings Settings { get; }

    /// <summary>Called with every read of the server's tools, before the read counts (so its contracts are registered first).</summary>
    internal Func<IList<Tool>, CancellationToken, Task>? ToolsRead { get; set; }

    /// <summary>Whether the server offers <paramref name="tool"/> with the contract of <paramref name="digest"/>, as last read.</summary>
    internal bool Offers(string tool, byte[] digest) =>
        _digests.TryGetValue(tool, out var current) && current.AsSpan().SequenceEqual(digest);

    /// <summary>
    /// The connection, connecting (and reading the tools) first when there is none. The connect itself is bounded by
    /// <see cref="McpServerSettings.ConnectTimeout"/>, not by <paramref name="cancellationToken"/>, which only ends this caller's wait.
    /// </summary>
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

            ObjectDisposedException.ThrowIf(_disposed, this);
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            deadline.CancelAfter(Settings.ConnectTimeout);
            var client = await McpClient.CreateAsync(Transport(), new McpClientOptions
            {
                ClientInfo = new Implementation { Name = "spine", Version = typeof(McpServerConnection).Assembly.GetName().Version?.ToString() ?? "1.0.0" },
                Handlers = new McpClientHandlers
                {
                    NotificationHandlers = [new(NotificationMethods.ToolListChangedNotification, (_, _) =>
                    {
                        QueueRefresh();
                        return ValueTask.CompletedTask;
                    })],
                },
            }, _loggers, deadline.Token);
            try
            {
                await ReadToolsAsync(client, deadline.Token);
            }
            catch
            {
                // Never connected as far as anyone knows: its server process must not outlive it.
                await DisposeQuietlyAsync(client);
                throw;
            }

            Volatile.Write(ref _client, client);
            _refreshLoop ??= Settings.RefreshInterval is { } every ? Task.Run(() => RefreshLoopAsync(every)) : null;
            return client;
        }
        finally
        {
            _connecting.Release();
        }
    }

    /// <summary>Whether a call's failure says the connection is gone (and not the server refusing, or the caller cancelling).</summary>
    internal static bool Broken(McpClient client, Exception failure) =>
        client.Completion.IsCompleted || failure is IOException or ClientTransportClosedException or HttpRequestException or ObjectDisposedException;

    /// <summary>Forgets a connection that failed (only that one), so the next call connects again.</summary>
    internal void Drop(McpClient broken)
    {
        if (Interlocked.CompareExchange(ref _client, null, broken) == broken)
        {
            LogDropped(_logger, Settings.Name);
            _ = DisposeQuietlyAsync(broken);
        }
    }

    /// <summary>Reads the server's tools now (connecting if need be); a read over a connection that broke drops it.</summary>
    internal async Task<IList<Tool>> ListAsync(CancellationToken cancellationToken)
    {
        var client = await ClientAsync(cancellationToken);
        try
        {
            return await ReadToolsAsync(client, cancellationToken);
        }
        catch (Exception e) when (Broken(client, e))
        {
            Drop(client);
            throw;
        }
    }

    private async Task<IList<Tool>> ReadToolsAsync(McpClient client, CancellationToken cancellationToken)
    {
        // One read at a time: an older read never overwrites what a newer one found.
        await _reading.WaitAsync(cancellationToken);
        try
        {
            var listed = await client.ListToolsAsync(cancellationToken: cancellationToken);
            var tools = listed.Select(t => t.ProtocolTool).GroupBy(t => t.Name, StringComparer.Ordinal).Select(g => g.First()).ToList();
            if (ToolsRead is { } handler)
            {
                await handler(tools, cancellationToken);
            }

            _digests = tools.ToDictionary(t => t.Name, t => Tools.ToolCatalog.Digest(McpTool.Describe(Settings, t, "0.0.0")), StringComparer.Ordinal);
            return tools;
        }
        finally
        {
            _reading.Release();
        }
    }

    /// <summary>Reads the tools soon, once however many notifications ask meanwhile.</summary>
    internal void QueueRefresh()
    {
        if (Interlocked.Exchange(ref _refreshQueued, 1) == 0)
        {
            _ = Task.Run(async () =>
            {
                Volatile.Write(ref _refreshQueued, 0);
                await RefreshQuietlyAsync();
            });
        }
    }

    private async Task RefreshQuietlyAsync()
    {
        try
        {
            await ListAsync(_stopping.Token);
        }
        catch (Exception e)
        {
            if (!_stopping.IsCancellationRequested)
            {
                LogRefreshFailed(_logger, e, Settings.Name);
            }
        }
    }

    private async Task RefreshLoopAsync(TimeSpan every)
    {
        using var timer = new PeriodicTimer(every);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token))
            {
                await RefreshQuietlyAsync();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private IClientTransport Transport() => Settings.Url is { } url
        ? new HttpClientTransport(new HttpClientTransportOptions { Endpoint = url, Name = Settings.Name }, _loggers)
        : new StdioClientTransport(new StdioClientTransportOptions
        {
            Name = Settings.Name,
            Command = Settings.Command!,
            Arguments = Settings.Arguments,
            WorkingDirectory = Settings.WorkingDirectory,
            EnvironmentVariables = Settings.Environment.ToDictionary(e => e.Key, e => (string?)e.Value),
        }, _loggers);

    private async Task DisposeQuietlyAsync(McpClient client)
    {
        try
        {
            await client.DisposeAsync();
        }
        catch (Exception e)
        {
            LogDisposeFailed(_logger, e, Settings.Name);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _connecting.WaitAsync();
        try
        {
            _disposed = true;
            if (Interlocked.Exchange(ref _client, null) is { } client)
            {
                await DisposeQuietlyAsync(client);
            }
        }
        finally
        {
            _connecting.Release();
        }

        if (_refreshLoop is { } loop)
        {
            await loop;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "MCP server {Server}: the connection failed; the next call connects again")]
    private static partial void LogDropped(ILogger logger, string server);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MCP server {Server}: reading its tools failed")]
    private static partial void LogRefreshFailed(ILogger logger, Exception exception, string server);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MCP server {Server}: closing a connection failed")]
    private static partial void LogDisposeFailed(ILogger logger, Exception exception, string server);
}
