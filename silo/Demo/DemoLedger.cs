using Spine.Storage;

namespace Spine.Silo.Demo;

/// <summary>The demo ledger: one row per effect, keyed by the idempotency key that applied it.</summary>
public static class DemoLedger
{
    /// <summary>
    /// Applies an effect once per key; a repeated delivery of the same key only counts itself.
    /// Returns how many deliveries the key has had (1 = this call applied the effect).
    /// </summary>
    public static async Task<int> ApplyAsync(SpineDatabase database, string idempotencyKey, string runId, int step, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(database);
        await using var command = database.DataSource.CreateCommand("""
            INSERT INTO spine_demo_ledger (idempotency_key, run_id, step) VALUES (@key, @run, @step)
            ON CONFLICT (idempotency_key) DO UPDATE SET deliveries = spine_demo_ledger.deliveries + 1
            RETURNING deliveries
            """);
        command.Parameters.AddWithValue("key", idempotencyKey);
        command.Parameters.AddWithValue("run", runId);
        command.Parameters.AddWithValue("step", step);
        return (int)(await command.ExecuteScalarAsync(cancellationToken))!;
    }
}
