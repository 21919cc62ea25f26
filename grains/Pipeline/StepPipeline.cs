using Spine.Journal;

namespace Spine.Pipeline;

/// <summary>
/// The ordered stages every context call passes through, built once per silo from the registered stages:
/// the call stages by <see cref="IStepStage.Order"/>, then (inside the retry stage) the attempt stages by
/// <see cref="IAttemptStage.Order"/>, then the call's own <see cref="StepCall.Execute"/>.
/// </summary>
public sealed class StepPipeline
{
    private readonly StepHandler _call;
    private readonly AttemptHandler _attempt;

    internal StepPipeline(IEnumerable<IStepStage> stages, IEnumerable<IAttemptStage> attemptStages, IEnumerable<IRunHook>? hooks = null)
    {
        ArgumentNullException.ThrowIfNull(stages);
        ArgumentNullException.ThrowIfNull(attemptStages);
        Hooks = hooks?.ToList() ?? [];
        Stages = stages.OrderBy(s => s.Order).ToList();
        AttemptStages = attemptStages.OrderBy(s => s.Order).ToList();
        CheckUnique(Stages.Select(s => (s.Order, s.GetType().Name)));
        CheckUnique(AttemptStages.Select(s => (s.Order, s.GetType().Name)));

        AttemptHandler attempt = (a, run) =>
        {
            // The last look before the call: a cancel that came while a stage held the attempt (a breaker's or a
            // budget's grain call) stops it here, where it has certainly had no effect.
            if (a.Call.Kind != JournalKind.Compensated)
            {
                run.ThrowIfCancelRequested();
            }

            a.Reach.Reached = true;
            return a.Call.Execute(a);
        };
        foreach (var stage in AttemptStages.AsEnumerable().Reverse())
        {
            var next = attempt;
            attempt = (a, run) => stage.InvokeAsync(a, run, next);
        }

        _attempt = attempt;

        // Past the last call stage, one attempt runs through the attempt stages: the retry stage calls on once
        // per attempt (with its number), and sees each attempt's failure as the exception it threw.
        StepHandler call = async (c, run) =>
        {
            // A cancel of the run reaches every call in flight through its token; a compensation (which a cancel starts) only stops with the activation.
            var compensation = c.Kind == JournalKind.Compensated;
            var started = new StepAttempt(c, c.Attempt, compensation ? run.Stopping : run.Cancelled);
            try
            {
                return StepOutcome.Succeeded(await attempt(started, run), c.Attempt);
            }
            catch (Exception e) when (!compensation && e is not (Errors.RunCancelledException or CallCancelledException) && CancelledByRun(run)
                && (e is OperationCanceledException || started.Reach.Reached))
            {
                // Whatever the call made of its token firing (a cancellation, or an aborted connection's error), the
                // cancel ended it: once it had begun, it may have had its effect.
                throw new CallCancelledException(run.RunId, started.Reach.Reached, e);
            }
        };
        foreach (var stage in Stages.AsEnumerable().Reverse())
        {
            var next = call;
            call = (c, run) => stage.InvokeAsync(c, run, next);
        }

        _call = call;
    }

    /// <summary>
    /// Whether the run's cancel fired the attempts' token (a cancel that is durable: the token fires only after the
    /// cancel is journaled), not the activation stopping, nor a call's own cancellation.
    /// </summary>
    internal static bool CancelledByRun(IStepRun run) =>
        run.CancelRequested && run.Cancelled.IsCancellationRequested && !run.Stopping.IsCancellationRequested;

    /// <summary>The call stages, outermost first.</summary>
    internal IReadOnlyList<IStepStage> Stages { get; }

    /// <summary>The attempt stages, outermost first.</summary>
    internal IReadOnlyList<IAttemptStage> AttemptStages { get; }

    /// <summary>The hooks called as an execution begins and as the run ends.</summary>
    internal IReadOnlyList<IRunHook> Hooks { get; }

    /// <summary>Tells every hook that an execution begins.</summary>
    internal async Task ExecutingAsync(IStepRun run)
    {
        foreach (var hook in Hooks)
        {
            await hook.ExecutingAsync(run);
        }
    }

    /// <summary>Tells every hook that the run ends.</summary>
    internal async Task EndingAsync(IStepRun run)
    {
        foreach (var hook in Hooks)
        {
            await hook.EndingAsync(run);
        }
    }

    /// <summary>Tells every hook that the run is about to show as not executing.</summary>
    internal async Task IdlingAsync(IStepRun run)
    {
        foreach (var hook in Hooks)
        {
            await hook.IdlingAsync(run);
        }
    }

    /// <summary>Runs a call through every stage.</summary>
    internal Task<StepOutcome> RunAsync(StepCall call, IStepRun run) => _call(call, run);

    /// <summary>Runs one attempt through the attempt stages only (a compensation, which has its own retries).</summary>
    internal Task<string> AttemptAsync(StepAttempt attempt, IStepRun run) => _attempt(attempt, run);

    private static void CheckUnique(IEnumerable<(int Order, string Name)> stages)
    {
        var clash = stages.GroupBy(s => s.Order).FirstOrDefault(g => g.Count() > 1);
        if (clash is not null)
        {
            throw new InvalidOperationException($"Step pipeline stages {string.Join(" and ", clash.Select(s => s.Name))} share the place {clash.Key}; give each its own.");
        }
    }
}
