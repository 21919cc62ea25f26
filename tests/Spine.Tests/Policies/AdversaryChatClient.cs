using Microsoft.Extensions.AI;

namespace Spine.Tests.Policies;

/// <summary>
/// A model that tries what a policy must stop, scripted by its prompt: <c>mixed</c> asks for a tool it was not shown,
/// then for arguments over a limit, then for a permitted call, then for a version outside the permitted range;
/// <c>runaway</c> calls the calculator for ever. It answers in text with the tools it was shown.
/// </summary>
public sealed class AdversaryChatClient : IChatClient
{
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var history = messages.ToList();
        var prompt = history.First(m => m.Role == ChatRole.User).Text;
        var turn = history.Count(m => m.Role == ChatRole.Assistant) + 1;
        var offered = string.Join(",", (options?.Tools ?? []).Select(t => t.Name).Order(StringComparer.Ordinal));
        var call = prompt switch
        {
            "mixed" => turn switch
            {
                1 => Call("notes_append", new() { ["note"] = "exfiltrate " + offered }),
                2 => Call("calculator", new() { ["expression"] = new string('9', 40) }),
                3 => Call("calculator", new() { ["expression"] = "2+2" }),
                4 => Call("text_stats", new() { ["text"] = "hello" }),
                _ => null,
            },
            "runaway" => Call("calculator", new() { ["expression"] = "1+1" }),
            _ => null,
        };
        var reply = call is null ? new ChatMessage(ChatRole.Assistant, "offered: " + offered) : new ChatMessage(ChatRole.Assistant, [call]);
        return Task.FromResult(new ChatResponse(reply) { Usage = new UsageDetails { InputTokenCount = 10, OutputTokenCount = 5 } });
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("The test model does not stream.");

    public object? GetService(Type serviceType, object? serviceKey = null) => null;

    public void Dispose()
    {
    }

    private static FunctionCallContent Call(string tool, Dictionary<string, object?> arguments) => new("c-" + Guid.NewGuid().ToString("N")[..8], tool, arguments);
}
