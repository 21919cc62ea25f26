using System.Text.Json;
using Spine.Tools;

namespace Spine.Silo.Demo;

/// <summary>Counts words, characters and sentences of a text: a read-only tool.</summary>
public sealed class TextStatsTool : ITool
{
    /// <inheritdoc />
    public ToolDefinition Definition { get; } = new()
    {
        Name = "text_stats",
        Version = "1.0.0",
        Description = "Counts the words, characters and sentences of a text.",
        Effect = ToolEffect.ReadOnly,
        InputSchema = """
            {"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":false}
            """,
        OutputSchema = """
            {"type":"object","properties":{"words":{"type":"integer","minimum":0},"characters":{"type":"integer","minimum":0},
             "sentences":{"type":"integer","minimum":0}},"required":["words","characters","sentences"]}
            """,
    };

    /// <inheritdoc />
    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        var text = arguments.GetProperty("text").GetString()!;
        var words = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
        var sentences = text.Split(['.', '!', '?'], StringSplitOptions.RemoveEmptyEntries).Count(s => !string.IsNullOrWhiteSpace(s));
        return Task.FromResult(JsonSerializer.SerializeToElement(new { words, characters = text.Length, sentences }));
    }
}
