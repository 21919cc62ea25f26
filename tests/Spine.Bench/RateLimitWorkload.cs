using System.Diagnostics;
using System.Globalization;
using Spine.Runs;
using Spine.Silo.Demo;

namespace Spine.Bench;

/// <summary>
/// Rate limit: two silo processes on one PostgreSQL, a cluster-wide limit on <c>ledger_apply</c> (set through the
/// silos' configuration), and runs of the <c>chaos</c> workflow (no injected failures) that make the calls from both
/// silos at once. Each call's time is its effect's <c>applied_at</c> in <c>spine_demo_ledger</c>; the figures are the
/// rate the calls achieved, the busiest second, and the calls that never happened.
/// </summary>
public static class RateLimitWorkload
{
    /// <summary>Runs the workload and prints its figures as name=value lines on stdout.</summary>
    public static async Task<int> RunAsync(int calls, int limit, int callsPerRun)
    {
        var clock = Stopwatch.StartNew();
        void Say(string text) => Console.Error.WriteLine($"[ratelimit {clock.Elapsed.TotalSeconds,6:F1}s] {text}");
        var environment = new Dictionary<string, string>
        {
            ["Spine__RateLimits__Limits__0__Name"] = "bench-ledger",
            ["Spine__RateLimits__Limits__0__Tool"] = "ledger_apply",
            ["Spine__RateLimits__Limits__0__Requests"] = limit.ToString(CultureInfo.InvariantCulture),
            ["Spine__RateLimits__Limits__0__Per"] = "00:00:01",
            ["Spine__RateLimits__Limits__0__Burst"] = "1",
        };
        await using var cluster = await ProcessCluster.StartAsync("ratelimit", silos: 2, TimeSpan.FromMinutes(1), environment);
        Say($"two silos ready; {calls} calls under a limit of {limit}/s");

        var runs = (calls + callsPerRun - 1) / callsPerRun;
        var batch = Guid.NewGuid().ToString("N")[..8];
        var started = await Task.WhenAll(Enumerable.Range(0, runs).Select(i => cluster.Client.StartAsync(
            "chaos", new ChaosInput(Steps: Math.Min(callsPerRun, calls - i * callsPerRun), FailureRate: 0), idempotencyKey: $"{batch}-{i}")));
        var ids = started.Select(r => r.RunId).ToArray();
        var ends = await Task.WhenAll(ids.Select(id => cluster.Client.WaitAsync(id, TimeSpan.FromMinutes(10))));
        Say($"{ends.Count(e => e.Status == RunStatus.Completed)} of {runs} runs completed");

        var times = new List<DateTime>();
        await using (var command = cluster.Data.CreateCommand("SELECT applied_at FROM spine_demo_ledger WHERE run_id = ANY(@ids) ORDER BY applied_at"))
        {
            command.Parameters.AddWithValue("ids", ids);
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                times.Add(reader.GetDateTime(0));
            }
        }

        // The busiest second: the most calls in any window of one second that starts at a call.
        var busiest = 0;
        for (int first = 0, last = 0; first < times.Count; first++)
        {
            while (last < times.Count && times[last] < times[first].AddSeconds(1))
            {
                last++;
            }

            busiest = Math.Max(busiest, last - first);
        }

        var span = times.Count > 1 ? (times[^1] - times[0]).TotalSeconds : double.NaN;
        var durableWaits = await cluster.CountAsync("SELECT count(*) FROM spine_journal WHERE run_id = ANY(@ids) AND kind = 26", ids);
        var failed = ends.Count(e => e.Status != RunStatus.Completed);
        ProcessCluster.Print("calls", calls);
        ProcessCluster.Print("limit", limit);
        ProcessCluster.Print("achieved_rate", Math.Round((times.Count - 1) / span, 1));
        ProcessCluster.Print("max_1s_window_rate", busiest);
        ProcessCluster.Print("calls_lost", calls - times.Count);
        ProcessCluster.Print("runs_failed", failed);
        ProcessCluster.Print("durable_waits", durableWaits);
        ProcessCluster.Print("seconds", Math.Round(clock.Elapsed.TotalSeconds, 1));
        return failed == 0 && times.Count == calls && busiest <= limit * 1.1 ? 0 : 1;
    }
}
