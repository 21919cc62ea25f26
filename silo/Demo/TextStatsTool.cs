using System.ComponentModel;
using Spine.Tools;

namespace Spine.Silo.Demo;

/// <summary>Counts words, characters and sentences of a text: a read-only tool, typed.</summary>
public sealed class TextStatsTool : TypedTool
{
    /// <inheritdoc />
    protected override TypedToolOptions Contract { get; } = new()
    {
        Name = "text_stats",
        Version = "1.0.0",
        Description = "Counts the words, characters and sentences of a text.",
        Effect = ToolEffect.ReadOnly,
    };

    /// <inheritdoc />
    protected override Delegate Method => Count;

    private static TextStats Count([Description("The text to count.")] string text)
    {
        var words = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
        var sentences = text.Split(['.', '!', '?'], StringSplitOptions.RemoveEmptyEntries).Count(s => !string.IsNullOrWhiteSpace(s));
        return new TextStats(words, text.Length, sentences);
    }
}

/// <summary>What <see cref="TextStatsTool"/> answers.</summary>
/// <param name="Words">Whitespace-separated words.</param>
/// <param name="Characters">Characters, spaces included.</param>
/// <param name="Sentences">Sentences, ended by . ! or ?.</param>
public sealed record TextStats(
    [property: System.ComponentModel.DataAnnotations.Range(0, int.MaxValue)] int Words,
    [property: System.ComponentModel.DataAnnotations.Range(0, int.MaxValue)] int Characters,
    [property: System.ComponentModel.DataAnnotations.Range(0, int.MaxValue)] int Sentences);
