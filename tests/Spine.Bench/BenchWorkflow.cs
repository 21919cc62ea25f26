using System.Collections.Concurrent;
using System.Diagnostics;
using Spine.Workflows;

namespace Spine.Bench;

/// <summary>The input of <see cref="BenchWorkflow"/>.</summary>
/// <param name="Steps">How many journaled steps the run takes.</param>
/// <param name="RecordSteps">Whether the run records each live step's start time in <see cref="StepClock"/>.</param>
public sealed record BenchInput(int Steps, bool RecordSteps = false);

/// <summary>The result of <see cref="BenchWorkflow"/>.</summary>
/// <param name="Steps">Steps completed.</param>
/// <param name="Checksum">Sum of the step numbers read back from the step results, so no result goes unused.</param>
public sealed record BenchOutput(int Steps, long Checksum);

/// <summary>The result of one benchmark step: about 100 bytes once serialised to JSON.</summary>
/// <param name="Step">The step number.</param>
/// <param name="Key">The step's idempotency key (run id and step).</param>
/// <param name="Note">Filler that brings the payload to about 100 bytes.</param>
public sealed record BenchItem(int Step, string Key, string Note);

/// <summary>
/// A chain of trivial side-effecting steps: each is a journaled <see cref="IWorkflowContext.RunAsync{T}"/>
/// whose action returns a small object at once, so a run's time is the runtime's own cost.
/// </summary>
[Workflow("spine-bench")]
public sealed class BenchWorkflow : IWorkflow<BenchInput, BenchOutput>
{
    /// <summary>The workflow type name the benchmark starts.</summary>
    public const string Name = "spine-bench";

    // The key is "r-" + 32 hex digits + "/" + step, ~38 characters; with the property names this filler lands near 100 bytes.
    private const string Filler = "benchmark-step-result-0123456789";

    /// <inheritdoc />
    public async Task<BenchOutput> RunAsync(IWorkflowContext context, BenchInput input)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(input);
        var clock = input.RecordSteps ? StepClock.For(context.RunId, input.Steps) : null;
        var checksum = 0L;
        for (var i = 1; i <= input.Steps; i++)
        {
            // Only a live step's start means anything: a replayed step is answered from memory.
            if (clock is not null && !context.IsReplaying)
            {
                clock.Mark(i);
            }

            var profiling = JournalWaitProfile.Enabled;
            var actionEnded = 0L;
            var item = await context.RunAsync($"step-{i}", step =>
            {
                if (profiling)
                {
                    actionEnded = Stopwatch.GetTimestamp();
                }

                return Task.FromResult(new BenchItem(step.Step, step.IdempotencyKey, Filler));
            });
            if (profiling && actionEnded != 0)
            {
                JournalWaitProfile.Add(actionEnded);
            }

            checksum += item.Step;
        }

        // The end mark closes the last step, so step N's time is mark N+1 minus mark N.
        if (clock is not null)
        {
            clock.Mark(input.Steps + 1);
        }

        return new BenchOutput(input.Steps, checksum);
    }
}

/// <summary>
/// Stopwatch timestamps of each live step's start, per run. The side effect cannot see its own journaling,
/// so a step's wall time is the gap between its start and the next step's start.
/// </summary>
public sealed class StepClock
{
    private static readonly ConcurrentDictionary<string, StepClock> _runs = new(StringComparer.Ordinal);
    private readonly long[] _marks;

    private StepClock(int steps) => _marks = new long[steps + 2];

    /// <summary>The clock of a run, created on first use.</summary>
    public static StepClock For(string runId, int steps) => _runs.GetOrAdd(runId, _ => new StepClock(steps));

    /// <summary>Removes and returns a run's clock.</summary>
    public static StepClock Take(string runId) =>
        _runs.TryRemove(runId, out var clock) ? clock : throw new InvalidOperationException($"Run {runId} recorded no step times.");

    /// <summary>Records the start of step <paramref name="step"/> (steps count from 1; steps + 1 is the end).</summary>
    public void Mark(int step) => _marks[step] = Stopwatch.GetTimestamp();

    /// <summary>The wall time of step <paramref name="step"/> in milliseconds.</summary>
    public double StepMilliseconds(int step)
    {
        if (_marks[step] == 0 || _marks[step + 1] == 0)
        {
            throw new InvalidOperationException($"Step {step} has no live start or end mark (was the run resumed from its journal?).");
        }

        return Stopwatch.GetElapsedTime(_marks[step], _marks[step + 1]).TotalMilliseconds;
    }
}

/// <summary>
/// Optional (--profile) split of a step's time: from the end of its action to the workflow seeing the result is
/// serialisation, hashing, the grain's append lock, the writer queue, the commit and the hop back to the grain.
/// </summary>
public static class JournalWaitProfile
{
    private static long _steps;
    private static long _waitTicks;

    /// <summary>Whether steps record the split.</summary>
    public static bool Enabled { get; set; }

    /// <summary>Steps recorded since the last <see cref="Reset"/>.</summary>
    public static long Steps => Interlocked.Read(ref _steps);

    /// <summary>Mean time from an action's end to its step returning, in milliseconds.</summary>
    public static double MeanWaitMilliseconds =>
        Steps == 0 ? 0 : TimeSpan.FromTicks(Interlocked.Read(ref _waitTicks) / Steps).TotalMilliseconds;

    /// <summary>Starts a fresh count.</summary>
    public static void Reset()
    {
        Interlocked.Exchange(ref _steps, 0);
        Interlocked.Exchange(ref _waitTicks, 0);
    }

    /// <summary>Counts one step whose action ended at <paramref name="actionEnded"/> and whose result reached the workflow now.</summary>
    public static void Add(long actionEnded)
    {
        Interlocked.Increment(ref _steps);
        Interlocked.Add(ref _waitTicks, Stopwatch.GetElapsedTime(actionEnded).Ticks);
    }
}
