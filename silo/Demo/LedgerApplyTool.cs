using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Spine.Errors;
using Spine.Recovery;
using Spine.Storage;
using Spine.Tools;

namespace Spine.Silo.Demo;

/// <summary>
/// Applies one ledger effect through its idempotency key, and fails on purpose to exercise recovery:
/// the first <c>failFirst</c> attempts, and a further <c>failureRate</c> share of attempts chosen by a
/// hash of (key, attempt, seed), fail transiently; half of the random failures strike after the effect
/// was applied, as a lost response would, so the retry must be deduplicated by the key.
/// </summary>
public sealed class LedgerApplyTool(SpineDatabase database) : ITool
{
    /// <inheritdoc />
    public ToolDefinition Definition { get; } = new()
    {
        Name = "ledger_apply",
        Version = "1.0.0",
        Description = "Applies a ledger effect exactly once per idempotency key; may fail transiently on purpose.",
        Effect = ToolEffect.Idempotent,
        InputSchema = """
            {"type":"object","properties":{"step":{"type":"integer","minimum":1},
             "failureRate":{"type":"number","minimum":0,"maximum":1},"failFirst":{"type":"integer","minimum":0},
             "seed":{"type":"integer"},"workMilliseconds":{"type":"integer","minimum":0,"maximum":60000}},
             "required":["step"],"additionalProperties":false}
            """,
        OutputSchema = """
            {"type":"object","properties":{"applied":{"type":"boolean"},"deliveries":{"type":"integer"}},"required":["applied","deliveries"]}
            """,
        Retry = new RetryPolicy { MaxAttempts = 15, InitialDelay = TimeSpan.FromMilliseconds(100), MaxDelay = TimeSpan.FromSeconds(2) },
        Breaker = new Breakers.BreakerPolicy { Enabled = false },

        // A ledger write is billed (as a payment API bills its calls): runs of an account with a cost ceiling stop when it is spent.
        CostPerCall = 0.01m,
    };

    /// <inheritdoc />
    public async Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var step = arguments.GetProperty("step").GetInt32();
        var failureRate = arguments.TryGetProperty("failureRate", out var rate) ? rate.GetDouble() : 0;
        var failFirst = arguments.TryGetProperty("failFirst", out var first) ? first.GetInt32() : 0;
        var seed = arguments.TryGetProperty("seed", out var s) ? s.GetInt64() : 0;
        var work = arguments.TryGetProperty("workMilliseconds", out var w) ? w.GetInt32() : 0;
        if (work > 0)
        {
            await Task.Delay(work, context.CancellationToken);
        }

        if (context.Attempt <= failFirst)
        {
            throw new TransientException($"ledger_apply step {step}: injected failure of attempt {context.Attempt} (failFirst={failFirst})");
        }

        var draw = Draw(context.IdempotencyKey, context.Attempt, seed);
        var fails = draw < failureRate;
        var failAfterEffect = fails && draw < failureRate / 2;
        if (fails && !failAfterEffect)
        {
            throw new TransientException($"ledger_apply step {step}: injected failure before the effect (attempt {context.Attempt})");
        }

        var deliveries = await DemoLedger.ApplyAsync(database, context.IdempotencyKey, context.RunId, step, context.CancellationToken);
        if (failAfterEffect)
        {
            throw new TransientException($"ledger_apply step {step}: injected failure after the effect (attempt {context.Attempt})");
        }

        return JsonSerializer.SerializeToElement(new { applied = deliveries == 1, deliveries });
    }

    private static double Draw(string key, int attempt, long seed)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{seed}/{key}/{attempt}"));
        return BitConverter.ToUInt32(hash, 0) / (double)uint.MaxValue;
    }
}
