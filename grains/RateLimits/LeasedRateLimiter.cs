using System.Threading.RateLimiting;

namespace Spine.RateLimits;

/// <summary>
/// A silo's side of one cluster-wide limit, as a <see cref="RateLimiter"/>: calls that wait for a permit are
/// batched into one lease from the limit's grain (with a few request permits more, kept for the next calls),
/// and each call waits in memory until its permit's time. A call whose permit would not be free within
/// <see cref="RateLimitOptions.MaxInMemoryWait"/> gets a lease that is not acquired, whose
/// <see cref="MetadataName.RetryAfter"/> says when to ask again.
/// </summary>
/// <remarks>
/// A permit is used within <see cref="Stale"/> of its time: used later, it would add to a later second's rate. So that
/// permits arrive before they are due, the grain schedules them a lead ahead (half as much again as a lease's round
/// trip). Spare permits past their time are dropped, and a call woken past it asks again (a few times; then it is
/// refused briefly, and waits durably, rather than bunch with later calls on a starved machine). A permit due before
/// a rate-limited answer's end (<see cref="Block"/>, or one another silo reported, learnt with the next lease) is
/// dropped too.
/// </remarks>
internal sealed class LeasedRateLimiter(RateLimit limit, IRateLimiterGrain grain, TimeProvider time, TimeSpan maxWait) : RateLimiter
{
    private const int MaxBatch = 512;

    // How many times a call woken late asks again before it is refused (briefly).
    private const int MaxStaleRounds = 3;

    private static readonly TimeSpan MaxLead = TimeSpan.FromMilliseconds(250);

    private readonly Lock _gate = new();
    private readonly List<long> _spare = [];
    private readonly List<Waiter> _waiting = [];
    private long _blockedUntil;
    private double _roundTrip = TimeSpan.FromMilliseconds(10).Ticks;
    private long _offset;
    private bool _offsetKnown;
    private bool _leasing;
    private long _idleSince = time.GetTimestamp();
    private long _acquired;
    private long _refused;

    public RateLimit Limit => limit;

    /// <summary>How late a permit of one may still be used: its slot of the rate, within 20 to 200 milliseconds.</summary>
    internal TimeSpan Stale { get; } = StaleFor(limit.Spec, 1);

    public override TimeSpan? IdleDuration
    {
        get
        {
            lock (_gate)
            {
                return _waiting.Count > 0 || _leasing ? null : time.GetElapsedTime(_idleSince);
            }
        }
    }

    public override RateLimiterStatistics? GetStatistics()
    {
        lock (_gate)
        {
            return new RateLimiterStatistics
            {
                CurrentAvailablePermits = _spare.Count,
                CurrentQueuedCount = _waiting.Count,
                TotalSuccessfulLeases = _acquired,
                TotalFailedLeases = _refused,
            };
        }
    }

    /// <summary>A rate-limited answer: no permit of this silo is used before <paramref name="until"/>, and the spares go.</summary>
    public void Block(DateTimeOffset until)
    {
        lock (_gate)
        {
            _spare.Clear();
            _blockedUntil = Math.Max(_blockedUntil, until.UtcTicks);
        }
    }

    protected override RateLimitLease AttemptAcquireCore(int permitCount)
    {
        var now = time.GetUtcNow().UtcTicks;
        lock (_gate)
        {
            DropStale(now);
            if (permitCount == 0 || (permitCount == 1 && _spare.Count > 0 && _spare[0] <= now))
            {
                if (permitCount == 1)
                {
                    _spare.RemoveAt(0);
                }

                _acquired++;
                return Lease.Acquired;
            }
        }

        return new Lease(false, null);
    }

    protected override async ValueTask<RateLimitLease> AcquireAsyncCore(int permitCount, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(permitCount);
        if (permitCount == 0)
        {
            return Lease.Acquired;
        }

        for (var round = 1; ; round++)
        {
            // A rate-limited answer holds this silo back first: briefly in memory, or the caller waits durably.
            long blocked;
            lock (_gate)
            {
                blocked = _blockedUntil;
            }

            var hold = new DateTimeOffset(blocked, TimeSpan.Zero) - time.GetUtcNow();
            if (hold > maxWait)
            {
                return Refused(hold);
            }

            if (hold > TimeSpan.Zero)
            {
                await Task.Delay(hold, time, cancellationToken).ConfigureAwait(false);
            }

            var (at, refusedUntil) = await TakeAsync(permitCount, cancellationToken);
            if (refusedUntil is { } until)
            {
                return Refused(new DateTimeOffset(until, TimeSpan.Zero) - time.GetUtcNow());
            }

            var wait = new DateTimeOffset(at, TimeSpan.Zero) - time.GetUtcNow();
            if (wait > TimeSpan.Zero)
            {
                try
                {
                    await Task.Delay(wait, time, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    if (permitCount == 1)
                    {
                        Spare(at);
                    }

                    throw;
                }
            }

            // A permit is used in its own slot: one that came late, or woke much later (a pause of the process), would
            // crowd a later second with the permits due then, so it is dropped and the call asks again.
            var lateness = time.GetUtcNow().UtcTicks - at;
            var stale = permitCount == 1 ? Stale : StaleFor(limit.Spec, permitCount);
            if (round >= MaxStaleRounds && lateness > stale.Ticks)
            {
                // Woken late again and again (a starved machine): the call waits a little, durably, and asks afresh.
                return Refused(stale);
            }

            lock (_gate)
            {
                if (lateness <= stale.Ticks && at >= _blockedUntil)
                {
                    _acquired++;
                    return Lease.Acquired;
                }
            }
        }
    }

    /// <summary>How late a permit of <paramref name="amount"/> may still be used: its slot of the rate (a model call's tokens take a longer one), within 20 to 200 milliseconds.</summary>
    internal static TimeSpan StaleFor(RateSpec spec, long amount) => TimeSpan.FromSeconds(Math.Clamp(amount / spec.PerSecond, 0.02, 0.2));

    // How far ahead the grain schedules permits: half as much again as a lease's round trip takes, on average.
    private TimeSpan Lead => TimeSpan.FromTicks((long)Math.Min(_roundTrip * 1.5, MaxLead.Ticks));

    // Only the lease loop (one at a time, handed on under the gate) reads and writes the round trip and the offset of
    // the grain's clock from this silo's (the grain's reading against the middle of the round trip).
    private void Learn(DateTimeOffset asked, DateTimeOffset received, DateTimeOffset issuedAt)
    {
        var roundTrip = (received - asked).Ticks;
        _roundTrip = (_roundTrip * 0.7) + (roundTrip * 0.3);
        if (issuedAt != default)
        {
            var offset = issuedAt.UtcTicks - (asked.UtcTicks + (roundTrip / 2));
            _offset = _offsetKnown ? (long)((_offset * 0.7) + (offset * 0.3)) : offset;
            _offsetKnown = true;
        }
    }

    private Lease Refused(TimeSpan retryAfter)
    {
        lock (_gate)
        {
            _refused++;
        }

        return new Lease(false, retryAfter);
    }

    // A spare permit, or one leased for this call, or the grain's refusal (when to ask again).
    private async Task<(long At, long? RefusedUntil)> TakeAsync(int permitCount, CancellationToken cancellationToken)
    {
        Waiter waiter;
        var lease = false;
        lock (_gate)
        {
            var now = time.GetUtcNow().UtcTicks;
            DropStale(now);
            if (permitCount == 1 && _spare.Count > 0)
            {
                var spare = _spare[0];
                _spare.RemoveAt(0);
                return (spare, null);
            }

            waiter = new Waiter(permitCount);
            _waiting.Add(waiter);
            lease = !_leasing;
            _leasing = true;
        }

        if (lease)
        {
            // Off the caller's scheduler (a grain's): the lease serves every waiting call of the silo.
            _ = Task.Run(LeaseLoopAsync, CancellationToken.None);
        }

        try
        {
            return await waiter.Result.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            Abandon(waiter);
            throw;
        }
    }

    // Under the gate. Spares are kept in time order, so the stale ones and those a block holds back are at the front.
    private void DropStale(long now)
    {
        var drop = 0;
        while (drop < _spare.Count && (_spare[drop] < now - Stale.Ticks || _spare[drop] < _blockedUntil))
        {
            drop++;
        }

        _spare.RemoveRange(0, drop);
    }

    private void Spare(long at)
    {
        lock (_gate)
        {
            var index = _spare.BinarySearch(at);
            _spare.Insert(index < 0 ? ~index : index, at);
        }
    }

    // A call that stopped waiting: out of the queue; a permit that came for it goes to the spares.
    private void Abandon(Waiter waiter)
    {
        lock (_gate)
        {
            if (_waiting.Remove(waiter))
            {
                return;
            }
        }

        if (!waiter.Result.TrySetCanceled() && waiter.Permits == 1 && waiter.Result.Task.IsCompletedSuccessfully
            && waiter.Result.Task.Result is { RefusedUntil: null } granted)
        {
            Spare(granted.At);
        }
    }

    private async Task LeaseLoopAsync()
    {
        while (true)
        {
            List<Waiter> batch;
            lock (_gate)
            {
                if (_waiting.Count == 0)
                {
                    _leasing = false;
                    _idleSince = time.GetTimestamp();
                    return;
                }

                batch = _waiting.Take(MaxBatch).ToList();
                _waiting.RemoveRange(0, batch.Count);
            }

            var amounts = new long[batch.Count + limit.Prefetch];
            for (var i = 0; i < amounts.Length; i++)
            {
                amounts[i] = i < batch.Count ? batch[i].Permits : 1;
            }

            RateGrant grant;
            var asked = time.GetUtcNow();
            try
            {
                // The horizon is on the grain's clock, and counts from when the permits can be due (the lead).
                var lead = Lead;
                grant = await grain.LeaseAsync(limit.Spec, amounts, lead, asked + TimeSpan.FromTicks(_offset) + lead + maxWait);
                Learn(asked, time.GetUtcNow(), grant.IssuedAt);
            }
            catch (Exception e)
            {
                foreach (var waiter in batch)
                {
                    waiter.Result.TrySetException(e);
                }

                continue;
            }

            lock (_gate)
            {
                _blockedUntil = Math.Max(_blockedUntil, Local(grant.BlockedUntil.UtcTicks));
            }

            var now = time.GetUtcNow().UtcTicks;
            List<Waiter>? again = null;
            for (var i = 0; i < batch.Count; i++)
            {
                if (i < grant.At.Length)
                {
                    if (!batch[i].Result.TrySetResult((Local(grant.At[i]), null)) && batch[i].Permits == 1)
                    {
                        Spare(Local(grant.At[i]));
                    }

                    continue;
                }

                // Refused because an amount before it did not fit: one free within the wait asks again, once.
                var refusedAt = i - grant.At.Length;
                var until = Local(grant.Refused is { } refused && refusedAt < refused.Length ? refused[refusedAt] : grant.NextFree.UtcTicks);
                if (!batch[i].Requeued && until - now <= maxWait.Ticks && refusedAt > 0)
                {
                    batch[i].Requeued = true;
                    (again ??= []).Add(batch[i]);
                    continue;
                }

                batch[i].Result.TrySetResult((0, until));
            }

            if (again is not null)
            {
                lock (_gate)
                {
                    _waiting.InsertRange(0, again);
                }
            }

            for (var i = batch.Count; i < grant.At.Length; i++)
            {
                Spare(Local(grant.At[i]));
            }
        }
    }

    // A time on the grain's clock, on this silo's.
    private long Local(long grainTicks) => grainTicks - _offset;

    private sealed class Waiter(int permits)
    {
        public int Permits { get; } = permits;

        // Put back in the queue once already (refused behind a larger amount).
        public bool Requeued { get; set; }

        public TaskCompletionSource<(long At, long? RefusedUntil)> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class Lease(bool acquired, TimeSpan? retryAfter) : RateLimitLease
    {
        public static readonly Lease Acquired = new(true, null);

        public override bool IsAcquired => acquired;

        public override IEnumerable<string> MetadataNames => retryAfter is null ? [] : [MetadataName.RetryAfter.Name];

        public override bool TryGetMetadata(string metadataName, out object? metadata)
        {
            if (retryAfter is { } value && metadataName == MetadataName.RetryAfter.Name)
            {
                metadata = value;
                return true;
            }

            metadata = null;
            return false;
        }
    }
}
