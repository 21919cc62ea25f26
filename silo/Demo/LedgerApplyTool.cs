using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using System.Text;
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
public sealed class LedgerApplyTool(SpineDatabase database) : TypedTool
{
    /// <inheritdoc />
    protected override TypedToolOptions Contract { get; } = new()
    {
        Name = "ledger_apply",
        Version = "1.0.0",
        Description = "Applies a ledger effect exactly once per idempotency key; may fail transiently on purpose.",
        Effect = ToolEffect.Idempotent,
        Retry = new RetryPolicy { MaxAttempts = 15, InitialDelay = TimeSpan.FromMilliseconds(100), MaxDelay = TimeSpan.FromSeconds(2) },
        Breaker = new Breakers.BreakerPolicy { Enabled = false },

        // A ledger write is billed (as a payment API bills its calls): runs of an account with a cost ceiling stop when it is spent.
        CostPerCall = 0.01m,
    };

    /// <inheritdoc />
    protected override Delegate Method => ApplyAsync;

    private async Task<LedgerApplied> ApplyAsync(
        ToolContext context,
        [Description("The workflow step the effect belongs to.")][Range(1, int.MaxValue)] int step,
        [Description("The chance of an injected transient failure per attempt.")][Range(0.0, 1.0)] double failureRate = 0,
        [Description("How many first attempts fail on purpose.")][Range(0, int.MaxValue)] int failFirst = 0,
        [Description("Seeds the injected failures.")] long seed = 0,
        [Description("How long the call works before the effect.")][Range(0, 60000)] int workMilliseconds = 0)
    {
        if (workMilliseconds > 0)
        {
            await Task.Delay(workMilliseconds, context.CancellationToken);
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

        return new LedgerApplied(deliveries == 1, deliveries);
    }

    private static double Draw(string key, int attempt, long seed)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{seed}/{key}/{attempt}"));
        return BitConverter.ToUInt32(hash, 0) / (double)uint.MaxValue;
    }
}

/// <summary>What <see cref="LedgerApplyTool"/> answers.</summary>
/// <param name="Applied">Whether this call made the effect (false: an earlier one did).</param>
/// <param name="Deliveries">How many calls of the key reached the ledger.</param>
public sealed record LedgerApplied(bool Applied, int Deliveries);
