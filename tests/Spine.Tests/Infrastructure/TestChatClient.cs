using Microsoft.Extensions.AI;

namespace Spine.Tests.Infrastructure;

/// <summary>A scripted model for tests: answers each request from the messages it is sent, and does not stream.</summary>
public abstract class TestChatClient : IChatClient
{
    public abstract Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default);

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("The test model does not stream.");

    public virtual object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
    }
}
