using Microsoft.Extensions.Logging;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;

namespace Spine.Budgets;

/// <summary>
/// Squares a run's journal with its account's budget. As an execution begins, the settlements the journal holds are
/// sent again (one the crash kept from the grain is counted now; the others find no reservation and change nothing).
/// As the run ends, they are sent once more, and every reservation the run still holds (a call that never finished,
/// or one whose reservation's answer was lost) is released.
/// </summary>
internal sealed partial class BudgetRunHook(BudgetCalls budgets, ILogger<BudgetRunHook> logger) : IRunHook
{
    public Task ExecutingAsync(IStepRun run) => SquareAsync(run, release: false);

    public Task EndingAsync(IStepRun run) => SquareAsync(run, release: true);

    private async Task SquareAsync(IStepRun run, bool release)
    {
        if (run.AccountId is not { } account)
        {
            return;
        }

        var settlements = new List<BudgetSettlement>();
        foreach (var row in run.Events(JournalKind.BudgetSettled))
        {
            var spent = RunPayloads.Read<BudgetSettledPayload>(row.Payload);
            if (spent.Account == account)
            {
                settlements.Add(new BudgetSettlement(run.RunId, row.Step!.Value, spent.Tokens, spent.Cost));
            }
        }

        // A run that never reserved has nothing to square (a reservation whose answer was lost as the run's own silo
        // died is reserved again, under the same key, when the run re-executes the call; if it never does, it expires).
        if (settlements.Count == 0 && (!release || !run.Events(JournalKind.BudgetReserved).Any()))
        {
            return;
        }

        try
        {
            // As the run ends no call of it is in flight: whatever it still holds (journaled or not, as when the answer
            // to a reservation was lost) is released.
            await budgets.CallAsync(account, b => release ? b.EndRunAsync(run.RunId, settlements) : b.SettleAllAsync(settlements), run.Stopping);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Left to the next execution, or to the reservations' expiry.
            LogSquareFailed(logger, e, run.RunId, account);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId}: its journaled budget settlements could not be sent to account {Account}'s budget")]
    private static partial void LogSquareFailed(ILogger logger, Exception exception, string runId, string account);
}
