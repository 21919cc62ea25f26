using Spine.Pipeline;

namespace Spine.Budgets;

/// <summary>
/// Attempt stage, after the rate limits' wait: an attempt that begins more than half a reservation's lifetime after its call's
/// reservation was last taken (after a long retry backoff, a breaker wait, an operator's retry) takes it again
/// under the same key, so that a call does not run on a reservation its account's budget let expire. (An attempt that
/// itself runs longer than half the lifetime is not renewed while it runs: keep ReservationTtl above twice the
/// longest attempt.)
/// </summary>
internal sealed class BudgetRenewalStage(CallCosts costs, BudgetCalls budgets) : IAttemptStage
{
    public int Order => StepStageOrder.BudgetRenewal;

    public async Task<string> InvokeAsync(StepAttempt attempt, IStepRun run, AttemptHandler next)
    {
        if (attempt.Call.Budget is { } hold && run.Time.GetUtcNow() - hold.RenewedAt > costs.Options.ReservationTtl / 2)
        {
            // Forced: the call was decided, and runs; its hold (and so its settlement) must be there.
            await budgets.CallAsync(hold.Account, b => b.ReserveAsync(hold.Reservation), run.Stopping);
            hold.RenewedAt = run.Time.GetUtcNow();
        }

        return await next(attempt, run);
    }
}
