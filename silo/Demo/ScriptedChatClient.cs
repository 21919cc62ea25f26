using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;

namespace Spine.Silo.Demo;

/// <summary>
/// A deterministic chat client that plays a tool-using assistant, so the demo and the tests run
/// offline: given the same conversation it always answers the same. It computes any arithmetic in the
/// prompt, measures the prompt, saves a note, then answers from the tool results it was given. Asked for
/// <c>ledger: 0,3000</c> it requests that many <c>ledger_apply</c> calls in one turn (parallel tool calls).
/// </summary>
public sealed partial class ScriptedChatClient : IChatClient
{
    /// <inheritdoc />
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var history = messages.ToList();
        var prompt = history.LastOrDefault(m => m.Role == ChatRole.User)?.Text ?? "";
        var results = history.SelectMany(m => m.Contents).OfType<FunctionResultContent>().ToList();
        var offered = options?.Tools?.Select(t => t.Name).ToHashSet(StringComparer.Ordinal) ?? [];
        var turn = history.Count(m => m.Role == ChatRole.Assistant) + 1;

        if (results.Count == 0 && offered.Contains("ledger_apply") && LedgerPattern().Match(prompt) is { Success: true } ledger)
        {
            // "ledger: 0,3000,3000": one turn asking for several ledger effects at once, each taking that long.
            var works = ledger.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            return Task.FromResult(Respond(turn, history, new ChatMessage(ChatRole.Assistant, works.Select((w, i) =>
                (AIContent)new FunctionCallContent($"call_{turn}_ledger_{i + 1}", "ledger_apply", new Dictionary<string, object?>
                {
                    ["step"] = i + 1,
                    ["workMilliseconds"] = int.Parse(w, CultureInfo.InvariantCulture),
                })).ToList())));
        }

        ChatMessage reply = results.Count switch
        {
            0 when offered.Contains("calculator") => Call(turn, "calculator", new() { ["expression"] = Expression(prompt) }),
            <= 1 when offered.Contains("text_stats") && !Called(history, "text_stats") => Call(turn, "text_stats", new() { ["text"] = prompt }),
            _ when offered.Contains("notes_append") && !Called(history, "notes_append") =>
                Call(turn, "notes_append", new() { ["note"] = $"Asked: {Truncate(prompt, 80)} | {Summary(results)}" }),
            _ => new ChatMessage(ChatRole.Assistant, $"Done. {Summary(results)}"),
        };

        return Task.FromResult(Respond(turn, history, reply));
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var response = await GetResponseAsync(messages, options, cancellationToken);
        foreach (var update in response.ToChatResponseUpdates())
        {
            yield return update;
        }
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceType == typeof(ScriptedChatClient) ? this
        : serviceType == typeof(ChatClientMetadata) ? Metadata
        : null;

    /// <summary>The model it plays (prices in <c>Spine:Budgets:Prices</c> are looked up by it).</summary>
    public const string ModelId = "spine-scripted-1";

    private static readonly ChatClientMetadata Metadata = new("spine-scripted", null, ModelId);

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private static ChatResponse Respond(int turn, List<ChatMessage> history, ChatMessage reply)
    {
        var inputTokens = history.Sum(m => (m.Text?.Length ?? 0) + 16) / 4;
        return new ChatResponse(reply)
        {
            ModelId = ModelId,
            ResponseId = $"scripted-{turn}",
            FinishReason = reply.Contents.OfType<FunctionCallContent>().Any() ? ChatFinishReason.ToolCalls : ChatFinishReason.Stop,
            Usage = new UsageDetails { InputTokenCount = inputTokens, OutputTokenCount = 24, TotalTokenCount = inputTokens + 24 },
        };
    }

    private static ChatMessage Call(int turn, string tool, Dictionary<string, object?> arguments) =>
        new(ChatRole.Assistant, [new FunctionCallContent($"call_{turn}_{tool}", tool, arguments)]);

    private static bool Called(List<ChatMessage> history, string tool) =>
        history.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Any(c => c.Name == tool);

    private static string Expression(string prompt)
    {
        var match = ArithmeticPattern().Matches(prompt).Select(m => m.Value.Trim()).Where(v => v.Any(char.IsAsciiDigit)).MaxBy(v => v.Length);
        return match ?? "6 * 7";
    }

    private static string Summary(List<FunctionResultContent> results) =>
        string.Join("; ", results.Select(r => r.Result is JsonElement e ? e.GetRawText() : Convert.ToString(r.Result, CultureInfo.InvariantCulture)));

    private static string Truncate(string text, int length) => text.Length <= length ? text : text[..length] + "…";

    [GeneratedRegex(@"ledger:\s*([\d,\s]+)")]
    private static partial Regex LedgerPattern();

    [GeneratedRegex(@"[\d\.\s\+\-\*\/\(\)]{3,}")]
    private static partial Regex ArithmeticPattern();
}
