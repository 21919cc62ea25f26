using System.Globalization;
using Spine.Bench;

// dotnet run -c Release --project tests/Spine.Bench -- <w10|w10-seq|w1000|all> [--profile] [--runs N] [--concurrency N]
//     [--seq-runs N] [--long-steps N] [--warmup N] [--pgbench-seconds N] [--fixed-warmup] [--memory-reminders] [--autoprepare-all]
// dotnet run -c Release --project tests/Spine.Bench -- w10 --telemetry [--rounds N] [--runs N]
// dotnet run -c Release --project tests/Spine.Bench -- chaos [--runs N] [--kills N] [--seed N]
// dotnet run -c Release --project tests/Spine.Bench -- failover [--runs N]
// dotnet run -c Release --project tests/Spine.Bench -- pg-restart [--runs N]
// dotnet run -c Release --project tests/Spine.Bench -- ratelimit [--calls N] [--limit N] [--calls-per-run N]
// dotnet run -c Release --project tests/Spine.Bench -- budget [--runs N] [--concurrency N]
// dotnet run -c Release --project tests/Spine.Bench -- w10-agent [--runs N] [--concurrency N] [--rounds N] [--parts policy,budget,approval]
// dotnet run -c Release --project tests/Spine.Bench -- adversarial [--runs N] [--concurrency N]
// dotnet run -c Release --project tests/Spine.Bench -- secrets [--runs N] [--concurrency N]
// stdout: one name=value line per figure; everything else goes to stderr.
if (args.Length > 0 && args[0] == "chaos")
{
    return await ChaosWorkload.RunAsync(IntOption("--runs", 500), IntOption("--kills", 5), IntOption("--seed", Environment.TickCount & int.MaxValue));
}

if (args.Length > 0 && args[0] == "failover")
{
    return await FailoverWorkload.RunAsync(IntOption("--runs", 300));
}

if (args.Length > 0 && args[0] == "ratelimit")
{
    return await RateLimitWorkload.RunAsync(IntOption("--calls", 4000), IntOption("--limit", 200), IntOption("--calls-per-run", 10));
}

if (args.Length > 0 && args[0] == "pg-restart")
{
    return await PgRestartWorkload.RunAsync(IntOption("--runs", 200));
}

string[] workloads = ["w10", "w10-seq", "w1000", "budget", "w10-agent", "adversarial", "secrets"];
if (args.Length == 0 || (args[0] != "all" && !workloads.Contains(args[0])))
{
    await Console.Error.WriteLineAsync("usage: Spine.Bench <w10|w10-seq|w1000|budget|w10-agent|adversarial|secrets|all|chaos|failover|pg-restart|ratelimit> [--profile] [--runs N] [--concurrency N] [--seq-runs N] [--long-steps N] [--warmup N] [--pgbench-seconds N] [--fixed-warmup] [--memory-reminders] [--autoprepare-all]");
    return 2;
}

var defaults = new BenchSettings();
var settings = defaults with
{
    Runs = IntOption("--runs", defaults.Runs),
    Concurrency = IntOption("--concurrency", defaults.Concurrency),
    SequentialRuns = IntOption("--seq-runs", defaults.SequentialRuns),
    LongSteps = IntOption("--long-steps", defaults.LongSteps),
    WarmupRuns = IntOption("--warmup", defaults.WarmupRuns),
    PgBenchSeconds = IntOption("--pgbench-seconds", defaults.PgBenchSeconds),
    Profile = args.Contains("--profile"),
    MemoryReminders = args.Contains("--memory-reminders"),
    FixedWarmup = args.Contains("--fixed-warmup"),
    AutoPrepareAll = args.Contains("--autoprepare-all"),
    Telemetry = args.Contains("--telemetry"),
    Rounds = IntOption("--rounds", defaults.Rounds),
};
var selected = args[0] == "all" ? workloads : [args[0]];

using var profile = settings.Profile ? new DbProfile() : null;
JournalWaitProfile.Enabled = settings.Profile;
await using (var environment = await BenchEnvironment.StartAsync(settings.MemoryReminders, settings.AutoPrepareAll))
{
    var bench = new Workloads(environment, settings, profile);
    foreach (var workload in selected)
    {
        // Under "all" the names are prefixed: w10 and w10-seq report the same ones.
        var figures = new Figures(selected.Length > 1 ? workload : null);
        await (workload switch
        {
            "w10" => bench.W10Async(figures),
            "w10-seq" => bench.W10SeqAsync(figures),
            "budget" => BudgetWorkload.RunAsync(environment, IntOption("--runs", 5000), IntOption("--concurrency", 64), figures),
            "adversarial" => AdversarialWorkload.RunAsync(environment, IntOption("--runs", 100), IntOption("--concurrency", 16), figures),
            "secrets" => SecretsWorkload.RunAsync(environment, IntOption("--runs", 100), IntOption("--concurrency", 16), figures),
            "w10-agent" => AgentWorkload.RunAsync(environment, IntOption("--runs", 1000), IntOption("--concurrency", 64), IntOption("--rounds", 3),
                AgentWorkload.Parts.Parse(StringOption("--parts")), profile, figures),
            _ => bench.W1000Async(figures),
        });
    }
}

Progress.Say("done");
return 0;

string? StringOption(string name)
{
    var at = Array.IndexOf(args, name);
    return at >= 0 && at + 1 < args.Length ? args[at + 1] : null;
}

int IntOption(string name, int fallback)
{
    var at = Array.IndexOf(args, name);
    return at >= 0 && at + 1 < args.Length ? int.Parse(args[at + 1], CultureInfo.InvariantCulture) : fallback;
}
