namespace Spine.Waits;

/// <summary>What a timed wait waits for, which decides the status a run shows while it waits.</summary>
internal enum WaitKind
{
    /// <summary>A retry's backoff: the run still shows as executing.</summary>
    Retry,

    /// <summary>A durable sleep: the run shows as sleeping.</summary>
    Sleep,

    /// <summary>A pause until the account's budget window resets: the run shows as awaiting budget.</summary>
    Budget,
}

/// <summary>
/// The timed waits of one run's activation: a grain timer for each wait, and the earliest of their times, which the
/// run's index row carries (<c>spine_runs.wake_at</c>) whenever its status says it waits, so that the recovery
/// sweep brings the run back into memory before it is due (a wait outlives its silo and its activation without a
/// reminder of its own). Any number of calls may wait at once; <see cref="WakeAll"/> ends every wait (a cancel).
/// </summary>
internal sealed class DurableWaits(Grain grain, TimeProvider time, CancellationToken stopping)
{
    private readonly Grain _grain = grain;
    private readonly TimeProvider _time = time;
    private readonly CancellationToken _stopping = stopping;
    private readonly Dictionary<TaskCompletionSource, (DateTimeOffset WakeAt, WaitKind Kind)> _waiters = [];

    /// <summary>How many of the pending waits are sleeps.</summary>
    public int Sleeping { get; private set; }

    /// <summary>How many of the pending waits are budget pauses.</summary>
    public int PausedForBudget { get; private set; }

    /// <summary>When the earliest pending wait is due; null when none is pending.</summary>
    public DateTimeOffset? EarliestWake => _waiters.Count == 0 ? null : _waiters.Values.Min(w => w.WakeAt);

    /// <summary>
    /// Registers a wait before anything is awaited, so that <see cref="WakeAll"/> arriving while the wait is
    /// being set up still ends it. Dispose the handle when the wait is over.
    /// </summary>
    public Wait Register(DateTimeOffset wakeAt, WaitKind kind)
    {
        var wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _waiters[wake] = (wakeAt, kind);
        Count(kind, 1);
        return new Wait(this, wake, wakeAt, kind);
    }

    private void Count(WaitKind kind, int delta)
    {
        Sleeping += kind == WaitKind.Sleep ? delta : 0;
        PausedForBudget += kind == WaitKind.Budget ? delta : 0;
    }

    /// <summary>Ends every pending wait now.</summary>
    public void WakeAll()
    {
        foreach (var waiter in _waiters.Keys)
        {
            waiter.TrySetResult();
        }
    }

    /// <summary>One registered wait.</summary>
    internal sealed class Wait(DurableWaits owner, TaskCompletionSource wake, DateTimeOffset wakeAt, WaitKind kind) : IDisposable
    {
        /// <summary>Completes at the wake-up time, or when every wait is woken; cancelled when the activation ends.</summary>
        public async Task ElapsedAsync()
        {
            await using (owner._stopping.Register(() => wake.TrySetCanceled()))
            {
                while (true)
                {
                    var left = wakeAt - owner._time.GetUtcNow();
                    if (left <= TimeSpan.Zero)
                    {
                        wake.TrySetResult();
                    }

                    if (wake.Task.IsCompleted)
                    {
                        await wake.Task;
                        return;
                    }

                    // A grain timer cannot be due later than about 49 days: a longer wait re-arms until its time.
                    var tick = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    using var timer = owner._grain.RegisterGrainTimer(
                        () =>
                        {
                            tick.TrySetResult();
                            return Task.CompletedTask;
                        },
                        new GrainTimerCreationOptions { DueTime = left < MaxTimerDue ? left : MaxTimerDue, Period = Timeout.InfiniteTimeSpan, Interleave = true });
                    await Task.WhenAny(wake.Task, tick.Task);
                }
            }
        }

        /// <summary>The longest a single grain timer is armed for (well below its limit of 2^32 - 2 ms).</summary>
        private static readonly TimeSpan MaxTimerDue = TimeSpan.FromDays(30);

        /// <summary>Ends this wait now (what it waited for came another way).</summary>
        public void Wake() => wake.TrySetResult();

        public void Dispose()
        {
            if (owner._waiters.Remove(wake))
            {
                owner.Count(kind, -1);
            }
        }
    }
}
