using Microsoft.Extensions.Logging;
using Spine.Pipeline;

namespace Spine.Budgets;

/// <summary>
/// Attempt stage, first of all: an attempt that begins more than half a reservation's lifetime after its call's
/// reservation was last taken (after a long retry backoff, a breaker wait, an operator's retry) takes it again
/// under the same key, so that a call does not run on a reservation its account's budget let expire.
/// </summary>
internal sealed partial class BudgetRenewalStage(CallCosts costs, BudgetCalls budgets, ILogger<BudgetRenewalStage> logger) : IAttemptStage
{
    public int Order => StepStageOrder.BudgetRenewal;

    public async Task<string> InvokeAsync(StepAttempt attempt, IStepRun run, AttemptHandler next)
    {
        if (attempt.Call.Budget is { } hold && run.Time.GetUtcNow() - hold.RenewedAt > costs.Options.ReservationTtl / 2)
        {
            var verdict = await budgets.CallAsync(hold.Account, b => b.ReserveAsync(hold.Reservation), run.Stopping);
            hold.RenewedAt = run.Time.GetUtcNow();
            if (!verdict.Granted)
            {
                LogNotRenewed(logger, run.RunId, attempt.Call.Step, hold.Account, verdict.Reason);
            }
        }

        return await next(attempt, run);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId}, step {Step}: the call's reservation had expired and account {Account}'s budget has no room for it now ({Reason}); the attempt goes on as the journal decided")]
    private static partial void LogNotRenewed(ILogger logger, string runId, int step, string account, string? reason);
}
