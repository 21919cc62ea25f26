using Microsoft.Extensions.Logging;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;

namespace Spine.Budgets;

/// <summary>
/// Squares a run's journal with its account's budget. As an execution begins, the settlements the journal holds are
/// sent again (one the crash kept from the grain is counted now; the others find no reservation and change nothing).
/// As the run ends, they are sent once more, and every reservation the journal holds without a settlement (a call
/// that never finished) is released.
/// </summary>
internal sealed partial class BudgetRunHook(IGrainFactory grains, ILogger<BudgetRunHook> logger) : IRunHook
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
        var settled = new HashSet<int>();
        foreach (var row in run.Events(JournalKind.BudgetSettled))
        {
            var spent = RunPayloads.Read<BudgetSettledPayload>(row.Payload);
            if (spent.Account == account)
            {
                settlements.Add(new BudgetSettlement(run.RunId, row.Step!.Value, spent.Tokens, spent.Cost));
            }

            settled.Add(row.Step!.Value);
        }

        var unsettled = release
            ? run.Events(JournalKind.BudgetReserved).Where(r => !settled.Contains(r.Step!.Value)).Select(r => r.Step!.Value).Distinct().ToList()
            : [];
        if (settlements.Count == 0 && unsettled.Count == 0)
        {
            return;
        }

        var budget = grains.GetGrain<IBudgetGrain>(account);
        try
        {
            if (settlements.Count > 0)
            {
                await budget.SettleAllAsync(settlements);
            }

            if (unsettled.Count > 0)
            {
                await budget.ReleaseAllAsync(run.RunId, unsettled);
            }
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
