using System.Text.Json;
using Spine.Storage;
using Spine.Tools;

namespace Spine.Silo.Demo;

/// <summary>
/// Saves a note to PostgreSQL: a side-effecting tool that deduplicates on the idempotency key, so a
/// step re-executed after a crash finds its note already saved instead of saving it twice.
/// </summary>
public sealed class NotesTool(SpineDatabase database) : ITool
{
    /// <inheritdoc />
    public ToolDefinition Definition { get; } = new()
    {
        Name = "notes_append",
        Version = "1.0.0",
        Description = "Saves a short note for the user and returns its id.",
        Effect = ToolEffect.SideEffecting,
        InputSchema = """
            {"type":"object","properties":{"note":{"type":"string","minLength":1,"maxLength":2000}},
             "required":["note"],"additionalProperties":false}
            """,
        OutputSchema = """
            {"type":"object","properties":{"noteId":{"type":"string"},"created":{"type":"boolean"}},"required":["noteId","created"]}
            """,
    };

    /// <inheritdoc />
    public async Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var note = arguments.GetProperty("note").GetString()!;
        await using var command = database.DataSource.CreateCommand(
            "INSERT INTO spine_demo_notes (idempotency_key, run_id, note) VALUES (@key, @run, @note) ON CONFLICT (idempotency_key) DO NOTHING");
        command.Parameters.AddWithValue("key", context.IdempotencyKey);
        command.Parameters.AddWithValue("run", context.RunId);
        command.Parameters.AddWithValue("note", note);
        var created = await command.ExecuteNonQueryAsync(context.CancellationToken) == 1;
        return JsonSerializer.SerializeToElement(new { noteId = context.IdempotencyKey, created });
    }
}
