using System.Diagnostics;
using System.Globalization;
using Spine.Runs;

namespace Spine.Bench;

/// <summary>Sizes of the workloads; the defaults are the documented benchmark, the options exist for quick trials.</summary>
public sealed record BenchSettings
{
    /// <summary>Runs measured by w10.</summary>
    public int Runs { get; init; } = 2000;

    /// <summary>Runs in flight in w10.</summary>
    public int Concurrency { get; init; } = 64;

    /// <summary>Steps of a w10 run.</summary>
    public int Steps { get; init; } = 10;

    /// <summary>Warm-up runs before a measurement.</summary>
    public int WarmupRuns { get; init; } = 100;

    /// <summary>Runs measured one at a time by w10-seq.</summary>
    public int SequentialRuns { get; init; } = 200;

    /// <summary>Steps of the w1000 run.</summary>
    public int LongSteps { get; init; } = 1000;

    /// <summary>pgbench clients.</summary>
    public int PgBenchClients { get; init; } = 64;

    /// <summary>pgbench threads.</summary>
    public int PgBenchThreads { get; init; } = 2;

    /// <summary>pgbench duration in seconds.</summary>
    public int PgBenchSeconds { get; init; } = 15;

    /// <summary>Whether to time the journal path and every PostgreSQL command (stderr only).</summary>
    public bool Profile { get; init; }

    /// <summary>Diagnostic: keep reminders in memory instead of PostgreSQL, to isolate what their writes cost.</summary>
    public bool MemoryReminders { get; init; }
}

/// <summary>The benchmark workloads. Each prints its figures as it finishes them.</summary>
public sealed class Workloads(BenchEnvironment environment, BenchSettings settings, DbProfile? profile)
{
    private static readonly TimeSpan _runTimeout = TimeSpan.FromMinutes(10);

    /// <summary>
    /// w10: throughput of 10-step runs, 64 in flight, then (same server, afterwards) pgbench's single-row INSERT
    /// rate and the ratio of the two.
    /// </summary>
    public async Task W10Async(Figures figures)
    {
        ArgumentNullException.ThrowIfNull(figures);
        // The checkpoint comes before the warm-up: the first change to each page after a checkpoint writes the
        // whole page to the WAL, a cost the warm-up should absorb rather than the measurement.
        await environment.CheckpointAsync();
        Progress.Say($"w10: warm-up, {settings.WarmupRuns} runs of {settings.Steps} steps, {settings.Concurrency} in flight");
        await RunManyAsync(settings.WarmupRuns, settings.Concurrency, settings.Steps);

        Progress.Say($"w10: measuring {settings.Runs} runs of {settings.Steps} steps, {settings.Concurrency} in flight");
        var phase = PhaseProbe.Start(profile, environment.PostgresCpu);
        var (latencies, seconds) = await RunManyAsync(settings.Runs, settings.Concurrency, settings.Steps);
        phase.Report("w10", seconds, settings.Runs * (settings.Steps + 2));
        var stepsPerSecond = settings.Runs * (double)settings.Steps / seconds;
        figures.Add("steps_per_s", stepsPerSecond, "F1");
        figures.Add("runs_per_s", settings.Runs / seconds, "F1");
        figures.Add("run_p50_ms", Stats.Percentile(latencies, 50));
        figures.Add("run_p99_ms", Stats.Percentile(latencies, 99));

        // After the Spine measurement, against the same server: the two see the same disk and settings.
        Progress.Say($"w10: Spine took {seconds:F2} s; now pgbench, {settings.PgBenchClients} clients, {settings.PgBenchSeconds} s");
        var tps = await PgBench.RunAsync(environment, settings.PgBenchClients, settings.PgBenchThreads, settings.PgBenchSeconds);
        figures.Add("pg_insert_tps", tps, "F1");
        figures.Add("ratio", stepsPerSecond / tps, "F3");
    }

    /// <summary>w10-seq: latency of 10-step runs started one at a time.</summary>
    public async Task W10SeqAsync(Figures figures)
    {
        ArgumentNullException.ThrowIfNull(figures);
        await environment.CheckpointAsync();
        Progress.Say($"w10-seq: warm-up, {settings.WarmupRuns} runs in flight then 20 one at a time");
        await RunManyAsync(settings.WarmupRuns, settings.Concurrency, settings.Steps);
        await RunManyAsync(20, 1, settings.Steps);

        Progress.Say($"w10-seq: measuring {settings.SequentialRuns} runs of {settings.Steps} steps, one at a time");
        var phase = PhaseProbe.Start(profile, environment.PostgresCpu);
        var (latencies, seconds) = await RunManyAsync(settings.SequentialRuns, 1, settings.Steps);
        phase.Report("w10-seq", seconds, settings.SequentialRuns * (settings.Steps + 2));
        figures.Add("run_p50_ms", Stats.Percentile(latencies, 50));
        figures.Add("run_p99_ms", Stats.Percentile(latencies, 99));
    }

    /// <summary>w1000: one run of 1,000 steps; do late steps cost more than early ones?</summary>
    public async Task W1000Async(Figures figures)
    {
        ArgumentNullException.ThrowIfNull(figures);

        // A short recorded run first, so that the early steps of the measured run are neither the JIT's first
        // pass nor the first page changes after the checkpoint.
        await environment.CheckpointAsync();
        Progress.Say("w1000: warm-up, one run of 50 steps");
        var warmup = await RunOnceAsync(new BenchInput(50, RecordSteps: true));
        StepClock.Take(warmup.RunId);

        Progress.Say($"w1000: measuring one run of {settings.LongSteps} steps");
        var phase = PhaseProbe.Start(profile, environment.PostgresCpu);
        var run = await RunOnceAsync(new BenchInput(settings.LongSteps, RecordSteps: true));
        phase.Report("w1000", run.Milliseconds / 1000, settings.LongSteps + 2);
        var clock = StepClock.Take(run.RunId);
        var steps = Enumerable.Range(1, settings.LongSteps).Select(clock.StepMilliseconds).ToArray();
        var window = Math.Min(10, settings.LongSteps / 2);
        var early = steps.Take(window).Average();
        var late = steps.Skip(settings.LongSteps - window).Average();
        var sorted = steps.Order().ToArray();
        Progress.Say(string.Create(
            CultureInfo.InvariantCulture,
            $"w1000: run took {run.Milliseconds:F0} ms; step p50 {Stats.Percentile(sorted, 50):F2} ms, p99 {Stats.Percentile(sorted, 99):F2} ms, max {sorted[^1]:F2} ms; means by hundred: {string.Join(" ", steps.Chunk(100).Select(c => c.Average().ToString("F2", CultureInfo.InvariantCulture)))}"));
        Progress.Say(string.Create(
            CultureInfo.InvariantCulture,
            $"w1000: medians instead of means: early {Stats.Percentile(steps.Take(window).Order().ToArray(), 50):F3} ms, late {Stats.Percentile(steps.Skip(settings.LongSteps - window).Order().ToArray(), 50):F3} ms"));
        figures.Add("early_step_ms", early, "F3");
        figures.Add("late_step_ms", late, "F3");
        figures.Add("late_over_early", late / early, "F3");
    }

    private async Task<(double[] SortedLatencies, double Seconds)> RunManyAsync(int runs, int concurrency, int steps)
    {
        var latencies = new double[runs];
        var next = -1;
        var clock = Stopwatch.StartNew();

        // Each worker keeps one run in flight: start, wait for it, start the next.
        var workers = Enumerable.Range(0, Math.Min(concurrency, runs)).Select(_ => Task.Run(async () =>
        {
            int index;
            while ((index = Interlocked.Increment(ref next)) < runs)
            {
                latencies[index] = (await RunOnceAsync(new BenchInput(steps))).Milliseconds;
            }
        }));
        await Task.WhenAll(workers);
        var seconds = clock.Elapsed.TotalSeconds;
        Array.Sort(latencies);
        return (latencies, seconds);
    }

    private async Task<(string RunId, double Milliseconds)> RunOnceAsync(BenchInput input)
    {
        var started = Stopwatch.GetTimestamp();
        var run = await environment.Client.StartAsync(BenchWorkflow.Name, input);
        var info = await environment.Client.WaitAsync(run.RunId, _runTimeout);
        var elapsed = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (info.Status != RunStatus.Completed || info.StepsRecorded != input.Steps)
        {
            throw new InvalidOperationException(
                $"Run {run.RunId} ended {info.Status} with {info.StepsRecorded}/{input.Steps} steps: {info.Error?.Kind} {info.Error?.Message}");
        }

        return (run.RunId, elapsed);
    }
}

/// <summary>
/// What a measured phase cost, for --profile (stderr only): CPU of this process and of the whole machine,
/// garbage collection, the journal wait of each step and every PostgreSQL command.
/// </summary>
public sealed class PhaseProbe
{
    private readonly DbProfile? _profile;
    private readonly PostgresCpu? _postgres;
    private readonly double _postgresCpu;
    private readonly TimeSpan _processCpu;
    private readonly (long Busy, long Total) _machine;
    private readonly int _gen0;
    private readonly int _gen1;
    private readonly int _gen2;
    private readonly TimeSpan _gcPause;

    private PhaseProbe(DbProfile? profile, PostgresCpu? postgres)
    {
        _profile = profile;
        _postgres = profile is null ? null : postgres;
        _postgresCpu = _postgres?.Seconds() ?? 0;
        _profile?.Reset();
        JournalWaitProfile.Reset();
        _processCpu = Process.GetCurrentProcess().TotalProcessorTime;
        _machine = MachineCpu();
        _gen0 = GC.CollectionCount(0);
        _gen1 = GC.CollectionCount(1);
        _gen2 = GC.CollectionCount(2);
        _gcPause = GC.GetTotalPauseDuration();
    }

    /// <summary>Starts a phase; null when not profiling.</summary>
    public static PhaseProbe Start(DbProfile? profile, PostgresCpu? postgres) => new(profile, postgres);

    /// <summary>Writes the phase's costs to stderr.</summary>
    public void Report(string phase, double seconds, int appends)
    {
        if (_profile is null)
        {
            return;
        }

        var postgresCpu = _postgres is null ? double.NaN : _postgres.Seconds() - _postgresCpu;
        var processCpu = (Process.GetCurrentProcess().TotalProcessorTime - _processCpu).TotalSeconds;
        var machine = MachineCpu();
        var busyTicks = machine.Busy - _machine.Busy;
        var totalTicks = machine.Total - _machine.Total;

        // /proc/stat counts in USER_HZ ticks summed over cores: busy/total is the share of the whole machine.
        var machineBusyCores = totalTicks == 0 ? 0 : (double)busyTicks / totalTicks * Environment.ProcessorCount;
        Console.Error.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"  [profile {phase}] CPU: bench+silo process {processCpu / seconds:F2} cores, PostgreSQL {postgresCpu / seconds:F2} cores, whole machine {machineBusyCores:F2} of {Environment.ProcessorCount} cores; per journal append: silo {processCpu * 1e6 / appends:F0} us + PostgreSQL {postgresCpu * 1e6 / appends:F0} us"));
        Console.Error.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"  [profile {phase}] GC: gen0 {GC.CollectionCount(0) - _gen0}, gen1 {GC.CollectionCount(1) - _gen1}, gen2 {GC.CollectionCount(2) - _gen2}, pauses {(GC.GetTotalPauseDuration() - _gcPause).TotalMilliseconds:F0} ms"));
        Console.Error.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"  [profile {phase}] step journal wait (action end -> result back in the workflow): mean {JournalWaitProfile.MeanWaitMilliseconds:F3} ms over {JournalWaitProfile.Steps} steps"));
        var commits = _profile.Count("journal commit") + _profile.Count("journal commit (+run row)");
        if (commits > 0)
        {
            Console.Error.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"  [profile {phase}] journal appends {appends} in {commits} commits: {(double)appends / commits:F1} appends per commit"));
        }

        _profile.Report(phase, seconds);
    }

    private static (long Busy, long Total) MachineCpu()
    {
        try
        {
            // First line: "cpu  user nice system idle iowait irq softirq steal ..."; idle and iowait are not busy.
            var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(long.Parse).ToArray();
            var total = fields.Take(8).Sum();
            var idle = fields[3] + fields[4];
            return (total - idle, total);
        }
        catch (IOException)
        {
            return (0, 0);
        }
    }
}
