using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Spine.Tests.Infrastructure;

/// <summary>
/// A TCP proxy on 127.0.0.1 in front of PostgreSQL that can lose the server's replies, as a network does
/// when a connection dies after a commit reached the server but before its acknowledgement came back.
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _targetPort;
    private readonly ConcurrentDictionary<TcpClient, TcpClient> _connections = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public FaultProxy(int targetPort)
    {
        _targetPort = targetPort;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>While set, bytes from the server are read and dropped instead of forwarded.</summary>
    public volatile bool SwallowReplies;

    /// <summary>Closes every connection through the proxy (new ones are accepted as before).</summary>
    public void CutAll()
    {
        foreach (var (client, server) in _connections)
        {
            client.Dispose();
            server.Dispose();
            _connections.TryRemove(client, out _);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        CutAll();
        try
        {
            await _accepting;
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var client = await _listener.AcceptTcpClientAsync(_stop.Token);
            var server = new TcpClient();
            try
            {
                await server.ConnectAsync(IPAddress.Loopback, _targetPort, _stop.Token);
            }
            catch (SocketException)
            {
                client.Dispose();
                server.Dispose();
                continue;
            }

            _connections[client] = server;
            _ = PumpAsync(client.GetStream(), server.GetStream(), () => false, client, server);
            _ = PumpAsync(server.GetStream(), client.GetStream(), () => SwallowReplies, client, server);
        }
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to, Func<bool> drop, TcpClient client, TcpClient server)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (true)
            {
                var n = await from.ReadAsync(buffer, _stop.Token);
                if (n == 0)
                {
                    break;
                }

                if (!drop())
                {
                    await to.WriteAsync(buffer.AsMemory(0, n), _stop.Token);
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
        }
        finally
        {
            _connections.TryRemove(client, out _);
            client.Dispose();
            server.Dispose();
        }
    }
}
