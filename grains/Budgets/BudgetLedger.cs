using System.Runtime.CompilerServices;
using Spine.Pipeline;

namespace Spine.Budgets;

/// <summary>
/// What each run activation's budget calls hold in memory, between the budget stage and the run hook: reservations
/// decided but not yet journaled, and settlements journaled but not yet confirmed by the account's grain.
/// </summary>
internal sealed class BudgetLedger
{
    private readonly ConditionalWeakTable<IStepRun, RunLedger> _runs = [];

    /// <summary>The ledger of one run's activation (created on first use, gone with the activation).</summary>
    public RunLedger For(IStepRun run) => _runs.GetOrCreateValue(run);
}

/// <summary>One run activation's budget calls in flight (see <see cref="BudgetLedger"/>).</summary>
internal sealed class RunLedger
{
    /// <summary>
    /// Reservations decided but not yet in the journal, by step: parallel calls of one run decide one after another
    /// (a run's calls run on its activation, one turn at a time), and each must see what the others took.
    /// </summary>
    public Dictionary<int, Spend> Deciding { get; } = [];

    /// <summary>
    /// Settlements in the journal that the account's grain has not confirmed, by step: sent on their own without
    /// waiting, and again with the run's next reservation, so that it finds them counted whichever arrives first.
    /// </summary>
    public Dictionary<int, BudgetSettlement> Unconfirmed { get; } = [];

    /// <summary>The settlements the grain has not confirmed (null: none).</summary>
    public List<BudgetSettlement>? TakeUnconfirmed() => Unconfirmed.Count == 0 ? null : [.. Unconfirmed.Values];

    /// <summary>Forgets the settlements the grain answered for (unless a newer one of the step replaced one meanwhile).</summary>
    public void Confirm(IReadOnlyList<BudgetSettlement>? sent)
    {
        foreach (var settlement in sent ?? [])
        {
            if (Unconfirmed.TryGetValue(settlement.Step, out var held) && held == settlement)
            {
                Unconfirmed.Remove(settlement.Step);
            }
        }
    }
}
