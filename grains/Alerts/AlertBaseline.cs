namespace Spine.Alerts;

/// <summary>What the detector keeps: how far it has judged, and each workflow type's baseline.</summary>
[GenerateSerializer, Alias("spine.AlertRecord")]
internal sealed class AlertRecord
{
    /// <summary>The last run judged: its index row's time...</summary>
    [Id(0)] public DateTimeOffset? JudgedUntil { get; set; }

    /// <summary>...and its id (runs ending at the same instant are judged in id order).</summary>
    [Id(1)] public string JudgedRunId { get; set; } = "";

    /// <summary>The baselines, by workflow type.</summary>
    [Id(2)] public Dictionary<string, WorkflowBaseline> Types { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Where the evaluation under way judges up to, recorded before it judges: one that did not finish (its alerts may
    /// be stored, its baselines not) is repeated over exactly the same runs, so that it raises the same alerts again.
    /// </summary>
    [Id(3)] public DateTimeOffset? JudgingUntil { get; set; }
}

/// <summary>One workflow type's baseline, the runs gathered for its next judgement, and which of its alerts are open.</summary>
[GenerateSerializer, Alias("spine.WorkflowBaseline")]
internal sealed class WorkflowBaseline
{
    /// <summary>Runs folded in.</summary>
    [Id(0)] public long Runs { get; set; }

    /// <summary>Share of runs that failed or were dead-lettered.</summary>
    [Id(1)] public double FailureRate { get; set; }

    /// <summary>Mean cost per run (its budget settlements).</summary>
    [Id(2)] public double CostPerRun { get; set; }

    /// <summary>Mean steps per run (recorded step, tool and model outcomes).</summary>
    [Id(3)] public double StepsPerRun { get; set; }

    /// <summary>The most steps a run folded in had.</summary>
    [Id(4)] public int MaxSteps { get; set; }

    /// <summary>Every tool a run of the type has called.</summary>
    [Id(5)] public HashSet<string> Tools { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Runs gathered for the next judgement of failure rate and cost.</summary>
    [Id(6)] public int PendingRuns { get; set; }

    /// <summary>Of them, failed.</summary>
    [Id(7)] public int PendingFailed { get; set; }

    /// <summary>Their cost.</summary>
    [Id(8)] public double PendingCost { get; set; }

    /// <summary>A <c>failure_rate</c> alert stands (until a judgement finds the rate back below its threshold).</summary>
    [Id(9)] public bool FailureOpen { get; set; }

    /// <summary>A <c>cost_spike</c> alert stands.</summary>
    [Id(10)] public bool CostOpen { get; set; }

    /// <summary>When the last <c>runaway_steps</c> alert was raised.</summary>
    [Id(11)] public DateTimeOffset? LastRunaway { get; set; }
}

/// <summary>What the detector reads of one run that ended.</summary>
internal sealed record RunFeatures(string RunId, string WorkflowType, bool Failed, int Steps, double Cost, IReadOnlyList<string> Tools);

/// <summary>An alert the rules raised, before it is stored.</summary>
internal sealed record RaisedAlert(string WorkflowType, string Rule, string? Subject, string Message, double Observed, double? Baseline, int Runs);

/// <summary>
/// The rules, over one workflow type's baseline: a tool never used before and a runaway step count are judged run by
/// run; failure rate and cost per run once at least <see cref="AlertOptions.MinRuns"/> runs are gathered. No rule
/// fires until the baseline holds <see cref="AlertOptions.BaselineRuns"/> runs; an open alert does not fire again,
/// and its metric is not folded into the baseline, until a judgement finds it back to normal.
/// </summary>
internal static class AlertRules
{
    /// <summary>Tool names a baseline keeps at most (a model that invents names would otherwise grow it without end).</summary>
    public const int MaxTools = 1_000;

    public static List<RaisedAlert> Judge(WorkflowBaseline b, string type, IReadOnlyList<RunFeatures> runs, AlertOptions o, DateTimeOffset now)
    {
        var raised = new List<RaisedAlert>();
        var warm = b.Runs >= o.BaselineRuns;
        foreach (var run in runs)
        {
            foreach (var tool in run.Tools.Where(t => !b.Tools.Contains(t) && b.Tools.Count < MaxTools).Order(StringComparer.Ordinal))
            {
                b.Tools.Add(tool);
                if (warm)
                {
                    raised.Add(new RaisedAlert(type, "new_tool", tool,
                        $"Run {run.RunId} of '{type}' called tool '{tool}', which no run of its {b.Runs} before it called.", 1, null, 1));
                }
            }

            var runaway = warm && run.Steps > o.StepsFactor * b.StepsPerRun && run.Steps > b.MaxSteps;
            if (runaway && (b.LastRunaway is not { } last || now - last >= o.RunawayCooldown))
            {
                b.LastRunaway = now;
                raised.Add(new RaisedAlert(type, "runaway_steps", run.RunId,
                    $"Run {run.RunId} of '{type}' took {run.Steps} steps; its runs take {b.StepsPerRun:0.#} on average and at most {b.MaxSteps}.",
                    run.Steps, b.StepsPerRun, 1));
            }

            if (!runaway)
            {
                b.StepsPerRun = Fold(b.StepsPerRun, run.Steps, b.Runs + b.PendingRuns, 1, o.BaselineWindow);
                b.MaxSteps = Math.Max(b.MaxSteps, run.Steps);
            }

            b.PendingRuns++;
            b.PendingFailed += run.Failed ? 1 : 0;
            b.PendingCost += run.Cost;
        }

        if (!warm || b.PendingRuns >= o.MinRuns)
        {
            if (warm)
            {
                raised.AddRange(JudgeRates(b, type, o));
            }

            var n = b.PendingRuns;
            if (!b.FailureOpen)
            {
                b.FailureRate = Fold(b.FailureRate, b.PendingFailed / (double)n, b.Runs, n, o.BaselineWindow);
            }

            if (!b.CostOpen)
            {
                b.CostPerRun = Fold(b.CostPerRun, b.PendingCost / n, b.Runs, n, o.BaselineWindow);
            }

            b.Runs += n;
            (b.PendingRuns, b.PendingFailed, b.PendingCost) = (0, 0, 0);
        }

        return raised;
    }

    private static IEnumerable<RaisedAlert> JudgeRates(WorkflowBaseline b, string type, AlertOptions o)
    {
        var n = b.PendingRuns;
        var rate = b.PendingFailed / (double)n;
        var threshold = Math.Max(o.FailureRateFactor * b.FailureRate, o.MinFailureRate);
        var failing = rate >= threshold;
        if (failing && !b.FailureOpen)
        {
            yield return new RaisedAlert(type, "failure_rate", null,
                $"{b.PendingFailed} of the last {n} runs of '{type}' failed ({rate:P0}); its baseline is {b.FailureRate:P1}.", rate, b.FailureRate, n);
        }

        b.FailureOpen = failing;
        var cost = b.PendingCost / n;
        var spiking = b.CostPerRun > 0 && cost >= o.CostFactor * b.CostPerRun;
        if (spiking && !b.CostOpen)
        {
            yield return new RaisedAlert(type, "cost_spike", null,
                $"The last {n} runs of '{type}' cost {cost:0.####} each on average; its baseline is {b.CostPerRun:0.####}.", cost, b.CostPerRun, n);
        }

        b.CostOpen = spiking;
    }

    /// <summary>
    /// A mean over the runs so far with <paramref name="n"/> more of mean <paramref name="value"/>: the plain mean while
    /// it covers at most <paramref name="window"/> runs, then exponentially weighted, each run weighing 1/window.
    /// </summary>
    private static double Fold(double mean, double value, long before, int n, int window) =>
        before + n <= window
            ? ((mean * before) + (value * n)) / (before + n)
            : mean + ((value - mean) * (1 - Math.Pow(1 - (1.0 / window), n)));
}
