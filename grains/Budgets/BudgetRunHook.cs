using Microsoft.Extensions.Logging;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;

namespace Spine.Budgets;

/// <summary>
/// Squares a run's journal with its account's budget. As an execution begins, the settlements the journal holds are
/// sent again (one the crash kept from the grain is counted now; the others find no reservation and change nothing).
/// Before the run shows as not executing, the settlements the grain has not confirmed are sent and waited for: a run
/// that waits is not resumed by the recovery sweep when its silo dies, and would owe them until it wakes. As the run
/// ends, they are sent once more, and every reservation the run still holds (a call that never finished, one whose
/// answer was lost, one an earlier activation took and never journaled) is released.
/// </summary>
internal sealed partial class BudgetRunHook(BudgetCalls budgets, BudgetLedger ledgers, ILogger<BudgetRunHook> logger) : IRunHook
{
    public Task ExecutingAsync(IStepRun run) => SquareAsync(run, release: false);

    public Task EndingAsync(IStepRun run) => SquareAsync(run, release: true);

    public async Task IdlingAsync(IStepRun run)
    {
        var ledger = ledgers.For(run);
        if (run.AccountId is not { } account || ledger.TakeUnconfirmed() is not { } unconfirmed)
        {
            return;
        }

        // Until answered (or the activation ends, when the next one sends the journal's settlements as it begins): the
        // run still shows as executing meanwhile, so a crash here leaves it to the sweep.
        await budgets.CallAsync(account, b => b.SettleAllAsync(unconfirmed), run.Stopping);
        ledger.Confirm(unconfirmed);
    }

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

        // Beginning, a run that settled nothing has nothing to send (a reservation granted to an earlier activation is
        // answered as held when the call runs again). Ending, every run of an account asks for its release: an earlier
        // activation may hold a reservation its journal never recorded (a model call's is journaled with its outcome).
        if (settlements.Count == 0 && !release)
        {
            return;
        }

        try
        {
            await budgets.CallAsync(account, b => release ? b.EndRunAsync(run.RunId, settlements) : b.SettleAllAsync(settlements), run.Stopping);
            ledgers.For(run).Confirm(settlements);
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
