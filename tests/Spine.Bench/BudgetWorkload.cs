using System.Diagnostics;
using Spine.Budgets;

namespace Spine.Bench;

/// <summary>
/// budget: how many reserve-then-settle pairs one account's budget grain serves per second, with every change
/// written to PostgreSQL, from many callers at once (the budget is a single grain per account: this is its ceiling).
/// </summary>
internal static class BudgetWorkload
{
    public static async Task RunAsync(BenchEnvironment environment, int calls, int concurrency, Figures figures)
    {
        var account = "bench-" + Guid.NewGuid().ToString("N");
        var budget = environment.GrainFactory.GetGrain<IBudgetGrain>(account);
        await budget.SetAsync(new BudgetCeilings { DailyTokens = long.MaxValue / 2 }, null);

        // Warm-up: the activation, its storage and the code paths.
        await PairsAsync(budget, "warm", 500, concurrency);
        Progress.Say($"budget: measuring {calls} reserve+settle pairs on one account, {concurrency} callers");
        var latencies = new double[calls];
        var clock = Stopwatch.StartNew();
        await PairsAsync(budget, "run", calls, concurrency, latencies);
        var seconds = clock.Elapsed.TotalSeconds;
        Array.Sort(latencies);
        figures.Add("budget_pairs_per_s", calls / seconds, "F1");
        figures.Add("budget_calls_per_s", 2 * calls / seconds, "F1");
        figures.Add("budget_pair_p50_ms", latencies[calls / 2]);
        figures.Add("budget_pair_p99_ms", latencies[(int)(calls * 0.99)]);
        var view = await budget.GetAsync();
        figures.Add("budget_open_reservations", view.Reservations, "F0");
    }

    private static async Task PairsAsync(IBudgetGrain budget, string prefix, int calls, int concurrency, double[]? latencies = null)
    {
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) is var i && i < calls)
            {
                var started = Stopwatch.GetTimestamp();
                var verdict = await budget.ReserveAsync(new BudgetReservation($"{prefix}-{i}", 1, 1000, 0.01m));
                if (!verdict.Granted)
                {
                    throw new InvalidOperationException($"reservation {i} refused: {verdict.Reason}");
                }

                await budget.SettleAsync($"{prefix}-{i}", 1, 800, 0.008m);
                if (latencies is not null)
                {
                    latencies[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                }
            }
        }));
    }
}
