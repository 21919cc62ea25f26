using System.Net;
using System.Net.Sockets;

namespace Spine.Local.Network;

/// <summary>Port choice for local servers: every listener Spine starts locally binds to 127.0.0.1 only.</summary>
public static class LoopbackPorts
{
    /// <summary>
    /// A loopback TCP port that was free a moment ago. Another process may take it before the caller binds it,
    /// so callers that can retry on another port should.
    /// </summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
