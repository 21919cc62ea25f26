using Microsoft.Extensions.DependencyInjection;

namespace Spine.Mcp;

/// <summary>Reads the MCP servers' tools while the silo starts, just before the tool registry is built from them.</summary>
internal sealed class McpStartup(IServiceProvider services) : ILifecycleParticipant<ISiloLifecycle>
{
    public void Participate(ISiloLifecycle observer) =>
        observer.Subscribe(nameof(McpStartup), ServiceLifecycleStage.RuntimeInitialize - 1,
            cancellation => services.GetRequiredService<McpToolSource>().LoadAsync(cancellation));
}
