using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using Spine.Storage;
using Spine.Tools;

namespace Spine.Silo.Demo;

/// <summary>
/// Saves a note to PostgreSQL: a side-effecting tool that deduplicates on the idempotency key, so a
/// step re-executed after a crash finds its note already saved instead of saving it twice.
/// </summary>
public sealed class NotesTool(SpineDatabase database) : TypedTool
{
    /// <inheritdoc />
    protected override TypedToolOptions Contract { get; } = new()
    {
        Name = "notes_append",
        Version = "1.0.0",
        Description = "Saves a short note for the user and returns its id.",
        Effect = ToolEffect.SideEffecting,
    };

    /// <inheritdoc />
    protected override Delegate Method => AppendAsync;

    private async Task<SavedNote> AppendAsync(ToolContext context, [Description("The note.")][StringLength(2000, MinimumLength = 1)] string note)
    {
        await using var command = database.DataSource.CreateCommand(
            "INSERT INTO spine_demo_notes (idempotency_key, run_id, note) VALUES (@key, @run, @note) ON CONFLICT (idempotency_key) DO NOTHING");
        command.Parameters.AddWithValue("key", context.IdempotencyKey);
        command.Parameters.AddWithValue("run", context.RunId);
        command.Parameters.AddWithValue("note", note);
        var created = await command.ExecuteNonQueryAsync(context.CancellationToken) == 1;
        return new SavedNote(context.IdempotencyKey, created);
    }
}

/// <summary>What <see cref="NotesTool"/> answers.</summary>
/// <param name="NoteId">The note's id (the call's idempotency key).</param>
/// <param name="Created">False when a repeated call found it saved already.</param>
public sealed record SavedNote(string NoteId, bool Created);
