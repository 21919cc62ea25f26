using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Spine.Policies;
using Spine.Tests.Infrastructure;
using Spine.Tools;

namespace Spine.Tests.Tools;

/// <summary>
/// <c>test_versioned</c> in three versions: 1.2.0 takes <c>q</c>; 1.5.0 also an optional <c>limit</c> (compatible);
/// 2.0.0 requires <c>limit</c> (breaking, so a new major). Each answers with its version.
/// </summary>
public sealed class VersionedTool(string version) : ITool
{
    public const string Name = "test_versioned";

    public static IEnumerable<ITool> All() => [new VersionedTool("1.2.0"), new VersionedTool("1.5.0"), new VersionedTool("2.0.0")];

    public ToolDefinition Definition { get; } = new()
    {
        Name = Name,
        Version = version,
        Description = $"Looks things up (v{version}).",
        InputSchema = version switch
        {
            "1.2.0" => """{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}""",
            "1.5.0" => """{"type":"object","properties":{"q":{"type":"string"},"limit":{"type":"integer"}},"required":["q"]}""",
            _ => """{"type":"object","properties":{"q":{"type":"string"},"limit":{"type":"integer"}},"required":["q","limit"]}""",
        },
        OutputSchema = """{"type":"object","properties":{"version":{"type":"string"}},"required":["version"]}""",
        Effect = ToolEffect.ReadOnly,
    };

    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context) =>
        Task.FromResult(JsonSerializer.SerializeToElement(new { version }));

    /// <summary>Agents of role <c>caret</c> may call the 1.x line from 1.2 on.</summary>
    public static PolicyRule CaretRule()
    {
        var rule = new PolicyRule { Name = "caret", Workflow = "agent", Role = "caret" };
        rule.Tools[Name] = new ToolRule { Versions = "^1.2" };
        return rule;
    }
}

/// <summary>
/// Calls <c>test_versioned</c> twice, one turn each, then answers; records what it was shown of the tool each turn
/// (its description names the version), by the run's prompt.
/// </summary>
public sealed class VersionRecordingChatClient : TestChatClient
{
    public const string Key = "version-recorder";

    public static ConcurrentDictionary<string, ConcurrentQueue<string>> Shown { get; } = new();

    public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var history = messages.ToList();
        var prompt = history.First(m => m.Role == ChatRole.User).Text;
        var declaration = options?.Tools?.OfType<AIFunctionDeclaration>().Single(t => t.Name == VersionedTool.Name);
        Shown.GetOrAdd(prompt, _ => new()).Enqueue($"{declaration?.Description} {declaration?.JsonSchema.GetRawText()}");
        var calls = history.Count(m => m.Role == ChatRole.Tool);
        return Task.FromResult(calls < 2
            ? new ChatResponse(new ChatMessage(ChatRole.Assistant, [new FunctionCallContent($"c{calls}", VersionedTool.Name, new Dictionary<string, object?> { ["q"] = "a", ["limit"] = 1 })]))
            : new ChatResponse(new ChatMessage(ChatRole.Assistant, "done")));
    }
}
