using System.Diagnostics;
using System.Globalization;
using Spine.Runs;

namespace Spine.Bench;

/// <summary>Sizes of the workloads; the defaults are the documented benchmark, the options exist for quick trials.</summary>
public sealed record BenchSettings
{
    /// <summary>Runs measured by w10.</summary>
    public int Runs { get; init; } = 2000;

    /// <summary>w10 measures telemetry off and on, alternating (<c>--telemetry</c>), instead of Spine against pgbench.</summary>
    public bool Telemetry { get; init; }

    /// <summary>Alternating rounds of w10 --telemetry.</summary>
    public int Rounds { get; init; } = 3;

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

    /// <summary>Warm up with exactly <see cref="WarmupRuns"/> runs instead of also waiting for the JIT to settle.</summary>
    public bool FixedWarmup { get; init; }

    /// <summary>Whether to time the journal path and every PostgreSQL command (stderr only).</summary>
    public bool Profile { get; init; }

    /// <summary>Diagnostic: give the Orleans ADO.NET providers Npgsql auto-prepare too, as Spine's own data source has.</summary>
    public bool AutoPrepareAll { get; init; }

    /// <summary>Diagnostic: keep reminders in memory instead of PostgreSQL, to isolate what their writes cost.</summary>
    public bool MemoryReminders { get; init; }
}

/// <summary>The benchmark workloads. Each prints its figures as it finishes them.</summary>
public sealed class Workloads(BenchEnvironment environment, BenchSettings settings, DbProfile? profile)
{
    // A batch that makes the JIT compile no more than this many methods counts as warm.
    private const int WarmJitThreshold = 10;

    // How many quiet batches in a row end the warm-up.
    private const int QuietBatchesNeeded = 3;

    private static readonly TimeSpan _runTimeout = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan _maxWarmup = TimeSpan.FromSeconds(60);

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
        await WarmUpAsync("w10", settings.WarmupRuns, settings.Concurrency);

        if (settings.Telemetry)
        {
            await W10TelemetryAsync(figures);
            return;
        }

        await SettleAsync();
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
        if (profile is not null)
        {
            await ReportActivationMemoryAsync();
        }
    }

    /// <summary>
    /// w10 --telemetry: rounds of w10 with telemetry off, then on (tracing of Spine, Orleans and Npgsql, and the Spine and
    /// Orleans meters, through OpenTelemetry's batch processor and a periodic metric reader to an exporter that counts
    /// what it is given); each figure the median round.
    /// </summary>
    private async Task W10TelemetryAsync(Figures figures)
    {
        var off = new List<double>();
        var on = new List<double>();
        long spans = 0, metricPoints = 0;
        for (var round = 1; round <= settings.Rounds; round++)
        {
            foreach (var enabled in new[] { false, true })
            {
                using var telemetry = enabled ? TelemetrySink.Start() : null;
                await SettleAsync();
                Progress.Say($"w10 --telemetry round {round}: telemetry {(enabled ? "on" : "off")}, {settings.Runs} runs");
                var phase = PhaseProbe.Start(profile, environment.PostgresCpu);
                var (_, seconds) = await RunManyAsync(settings.Runs, settings.Concurrency, settings.Steps);
                phase.Report($"w10 telemetry {(enabled ? "on" : "off")}", seconds, settings.Runs * (settings.Steps + 2));
                var rate = settings.Runs * (double)settings.Steps / seconds;
                (enabled ? on : off).Add(rate);
                if (telemetry is not null)
                {
                    var (exportedSpans, exportedPoints) = telemetry.Stop();
                    spans += exportedSpans;
                    metricPoints += exportedPoints;
                    Progress.Say($"w10 --telemetry round {round}: {rate:F1} steps/s on, {exportedSpans} spans and {exportedPoints} metric points exported");
                }
                else
                {
                    Progress.Say($"w10 --telemetry round {round}: {rate:F1} steps/s off");
                }
            }
        }

        off.Sort();
        on.Sort();
        var offMedian = off[off.Count / 2];
        var onMedian = on[on.Count / 2];
        figures.Add("steps_per_s_off", offMedian, "F1");
        figures.Add("steps_per_s_on", onMedian, "F1");
        figures.Add("telemetry_overhead", 1 - onMedian / offMedian, "F3");
        figures.Add("spans_per_run", spans / (double)(settings.Runs * settings.Rounds), "F1");
        figures.Add("metric_points_exported", metricPoints, "F0");
    }

    /// <summary>w10-seq: latency of 10-step runs started one at a time.</summary>
    public async Task W10SeqAsync(Figures figures)
    {
        ArgumentNullException.ThrowIfNull(figures);
        await environment.CheckpointAsync();
        await WarmUpAsync("w10-seq", settings.WarmupRuns, settings.Concurrency);
        await WarmUpAsync("w10-seq", 20, 1);

        await SettleAsync();
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
        await WarmUpAsync("w1000", 20, 1);
        Progress.Say("w1000: warm-up, one run of 50 steps");
        var warmup = await RunOnceAsync(new BenchInput(50, RecordSteps: true));
        StepClock.Take(warmup.RunId);

        await SettleAsync();
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

    /// <summary>
    /// Runs at least <paramref name="minRuns"/> runs, then keeps going in batches until the JIT is quiet: tiered
    /// compilation recompiles hot methods in the background for several seconds after start-up, and that CPU
    /// (a third of a core, seen with perf) would otherwise be charged to the measurement on this 2-core machine.
    /// </summary>
    private async Task WarmUpAsync(string workload, int minRuns, int concurrency)
    {
        var clock = Stopwatch.StartNew();
        var jitBefore = System.Runtime.JitInfo.GetCompiledMethodCount();
        await RunManyAsync(minRuns, concurrency, settings.Steps);
        var runs = minRuns;
        if (settings.FixedWarmup)
        {
            Progress.Say($"{workload}: warm-up done: {runs} runs ({concurrency} in flight), not waiting for the JIT (--fixed-warmup)");
            return;
        }

        // Tiered compilation promotes methods in the background, a while after they turn hot, so one quiet batch
        // proves little: wait for several in a row, each followed by a pause for the background compiler.
        var batch = Math.Max(concurrency * 4, 50);
        var quietBatches = 0;
        var compiled = 0L;
        while (quietBatches < QuietBatchesNeeded && clock.Elapsed < _maxWarmup)
        {
            var batchJit = System.Runtime.JitInfo.GetCompiledMethodCount();
            await RunManyAsync(batch, concurrency, settings.Steps);
            await Task.Delay(TimeSpan.FromMilliseconds(300));
            runs += batch;
            compiled = System.Runtime.JitInfo.GetCompiledMethodCount() - batchJit;
            quietBatches = compiled <= WarmJitThreshold ? quietBatches + 1 : 0;
        }

        Progress.Say(string.Create(
            CultureInfo.InvariantCulture,
            $"{workload}: warm-up done: {runs} runs ({concurrency} in flight) in {clock.Elapsed.TotalSeconds:F1} s, {System.Runtime.JitInfo.GetCompiledMethodCount() - jitBefore} methods JIT-compiled, {compiled} in the last batch of {batch}{(quietBatches < QuietBatchesNeeded ? " (gave up waiting for the JIT)" : "")}"));
    }

    /// <summary>
    /// Diagnostic (--profile, after w10's figures): what the finished runs' grain activations, which stay in
    /// memory until Orleans collects idle activations, hold on to. Deactivates them all.
    /// </summary>
    private async Task ReportActivationMemoryAsync()
    {
        var management = environment.GrainFactory.GetGrain<IManagementGrain>(0);
        var activations = await management.GetTotalActivationCount();
        var heap = GC.GetTotalMemory(forceFullCollection: true);
        await management.ForceActivationCollection(TimeSpan.Zero);
        await Task.Delay(TimeSpan.FromSeconds(3));
        var activationsAfter = await management.GetTotalActivationCount();
        var heapAfter = GC.GetTotalMemory(forceFullCollection: true);
        var freed = activations - activationsAfter;
        Progress.Say(string.Create(
            CultureInfo.InvariantCulture,
            $"  [profile w10] idle activations: {activations} before a forced collection, {activationsAfter} after; managed heap {heap / 1048576.0:F1} MB -> {heapAfter / 1048576.0:F1} MB, {(freed > 0 ? (heap - heapAfter) / (double)freed : 0):F0} bytes per collected activation"));
    }

    /// <summary>
    /// A pause between warm-up and measurement: the last warm-up runs still remove their reminders after
    /// completing, and that trailing work belongs to neither phase.
    /// </summary>
    private static Task SettleAsync() => Task.Delay(TimeSpan.FromSeconds(1));

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
    private readonly long _jitMethods;
    private readonly TimeSpan _jitTime;

    private PhaseProbe(DbProfile? profile, PostgresCpu? postgres)
    {
        _jitMethods = System.Runtime.JitInfo.GetCompiledMethodCount();
        _jitTime = System.Runtime.JitInfo.GetCompilationTime();
        _profile = profile;
        _postgres = postgres;
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

    /// <summary>Starts a phase.</summary>
    public static PhaseProbe Start(DbProfile? profile, PostgresCpu? postgres) => new(profile, postgres);

    /// <summary>
    /// Writes the phase's costs to stderr: always the JIT and CPU lines (with a warning when something else on
    /// the machine used CPU meanwhile), and with --profile the rest.
    /// </summary>
    public void Report(string phase, double seconds, int appends)
    {
        // A measurement during which the JIT was still busy is suspect.
        Progress.Say(string.Create(
            CultureInfo.InvariantCulture,
            $"{phase}: during the measurement the JIT compiled {System.Runtime.JitInfo.GetCompiledMethodCount() - _jitMethods} methods ({(System.Runtime.JitInfo.GetCompilationTime() - _jitTime).TotalMilliseconds:F0} ms)"));

        var postgresCpu = _postgres is null ? double.NaN : _postgres.Seconds() - _postgresCpu;
        var processCpu = (Process.GetCurrentProcess().TotalProcessorTime - _processCpu).TotalSeconds;
        var machineBusyCores = MachineBusyCoresSince(_machine);
        Progress.Say(string.Create(
            CultureInfo.InvariantCulture,
            $"{phase}: CPU: bench+silo process {processCpu / seconds:F2} cores, PostgreSQL {postgresCpu / seconds:F2} cores, whole machine {machineBusyCores:F2} of {Environment.ProcessorCount} cores; per journal append: silo {processCpu * 1e6 / appends:F0} us + PostgreSQL {postgresCpu * 1e6 / appends:F0} us"));
        // /proc counts CPU in 10 ms ticks per process: over a phase shorter than 1.5 s the estimate is too coarse to warn on.
        if (seconds >= 1.5)
        {
            WarnIfMachineShared(phase, machineBusyCores - ((processCpu + postgresCpu) / seconds));
        }
        if (_profile is null)
        {
            return;
        }

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

    /// <summary>Warns on stderr when processes other than the benchmark and its PostgreSQL used CPU during a phase.</summary>
    public static void WarnIfMachineShared(string phase, double otherCores)
    {
        // The 2-core machine may be shared with other work; its figures would then be low and noisy. Kernel
        // threads working for the benchmark itself (block I/O, memory) count as other too, hence the margin.
        if (otherCores > 0.3)
        {
            Progress.Say(string.Create(
                CultureInfo.InvariantCulture,
                $"WARNING: {phase}: other processes or kernel threads used about {otherCores:F2} cores during the measurement: its figures may be disturbed, run again on a quiet machine"));
        }
    }

    /// <summary>How many cores of the machine were busy, on average, since <paramref name="since"/>.</summary>
    public static double MachineBusyCoresSince((long Busy, long Total) since)
    {
        var now = MachineCpu();
        var totalTicks = now.Total - since.Total;

        // /proc/stat counts in USER_HZ ticks summed over cores: busy/total is the share of the whole machine.
        return totalTicks == 0 ? 0 : (double)(now.Busy - since.Busy) / totalTicks * Environment.ProcessorCount;
    }

    /// <summary>The machine's busy and total CPU ticks so far.</summary>
    public static (long Busy, long Total) MachineCpu()
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
