using Spine.Agents;
using Spine.Budgets;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Budgets;

/// <summary>
/// One account's budget shared by agent runs on two real silo processes, one of which is SIGKILLed while runs hold
/// reservations: the account never spends more than its ceiling, every refusal is journaled, and no reservation is
/// left behind.
/// </summary>
public sealed class BudgetFailoverTests : IAsyncLifetime
{
    private const int Runs = 200;

    /// <summary>What a ledger write costs (the demo tool's CostPerCall); each run writes twice, in parallel.</summary>
    private const decimal PerCall = 0.01m;

    /// <summary>Room for 100 ledger writes: about 50 runs.</summary>
    private const decimal Ceiling = 1.00m;

    private SiloProcessCluster _cluster = null!;

    public async Task InitializeAsync() => _cluster = await SiloProcessCluster.StartAsync("budget", 2);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task TwoHundredAgentRuns_OfOneAccount_AcrossTwoSilos_OneKilled_SpendAtMostTheCeiling_JournalEveryRefusal_AndLeaveNoReservation()
    {
        var client = _cluster.Client;
        var postgres = _cluster.Postgres;
        var account = "acct-" + Guid.NewGuid().ToString("N");
        await client.SetBudgetAsync(account, new BudgetCeilings { TotalCost = Ceiling });

        // Each run: a model turn asking for two ledger writes of 3 s each (in parallel), then a closing turn.
        var input = new AgentInput("ledger: 3000,3000", Tools: ["ledger_apply"], MaxTurns: 4);
        var ids = (await Task.WhenAll(Enumerable.Range(0, Runs).Select(_ => client.StartAsync("agent", input, accountId: account)))).Select(r => r.RunId).ToArray();

        // Kill the silo whose runs hold the most reservations, while their ledger writes are in flight.
        const string Holding = """
            SELECT coalesce(array_agg(DISTINCT r.run_id), '{}') FROM spine_journal r
            WHERE r.run_id = ANY(@ids) AND r.kind = 16 AND r.name = 'ledger_apply'
              AND NOT EXISTS (SELECT 1 FROM spine_journal s WHERE s.run_id = r.run_id AND s.step = r.step AND s.kind = 17)
            """;
        var holding = await Eventually.GetAsync(() => postgres.ScalarAsync<string[]>(Holding, ("ids", ids)), h => h.Length >= 10, TimeSpan.FromSeconds(60), "runs to hold reservations");
        var located = await _cluster.LocateRunsAsync(holding);
        await _cluster.KillAsync(located.Values.GroupBy(p => p).MaxBy(g => g.Count())!.Key);

        await Eventually.GetAsync(
            () => postgres.ScalarAsync<long>("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status IN (3, 4, 5, 8)", ("ids", ids)),
            n => n == Runs, TimeSpan.FromSeconds(180), "every run to finish");
        var budget = await Eventually.GetAsync(() => client.GetBudgetAsync(account), b => b.Reservations == 0, TimeSpan.FromSeconds(30), "no reservation to be left");

        var completed = await postgres.ScalarAsync<long>("SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status = 3", ("ids", ids));
        var failedOther = await postgres.ScalarAsync<long>(
            "SELECT count(*) FROM spine_runs WHERE run_id = ANY(@ids) AND status <> 3 AND error_kind IS DISTINCT FROM 'budget_exhausted'", ("ids", ids));
        var refusedWithoutRow = await postgres.ScalarAsync<long>(
            """
            SELECT count(*) FROM spine_runs x WHERE x.run_id = ANY(@ids) AND x.error_kind = 'budget_exhausted'
              AND NOT EXISTS (SELECT 1 FROM spine_journal j WHERE j.run_id = x.run_id AND j.kind = 18 AND j.step = x.error_step)
            """, ("ids", ids));
        var writes = await postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids));

        Assert.True(budget.SpentCostTotal <= Ceiling, $"spent {budget.SpentCostTotal} over a ceiling of {Ceiling}");
        Assert.Equal((0, 0m), (budget.Reservations, budget.ReservedCost));

        // Every ledger write that happened is charged once, and nothing else is.
        Assert.Equal(writes * PerCall, budget.SpentCostTotal);
        Assert.InRange(completed, 1, 50);
        Assert.Equal(0L, failedOther);
        Assert.Equal(0L, refusedWithoutRow);
    }
}
