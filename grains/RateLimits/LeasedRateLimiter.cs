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
/// A permit is used within <see cref="Stale"/> of its time (or of its arrival, when the lease came late): used later,
/// it would add to a later second's rate. Spare permits past that are dropped, and a call woken past it asks again.
/// </remarks>
internal sealed class LeasedRateLimiter(RateLimit limit, IRateLimiterGrain grain, TimeProvider time, TimeSpan maxWait) : RateLimiter
{
    /// <summary>How late a spare permit may still be taken.</summary>
    internal static readonly TimeSpan Stale = TimeSpan.FromMilliseconds(20);

    private const int MaxBatch = 512;

    private readonly Lock _gate = new();
    private readonly Queue<long> _spare = new();
    private readonly List<Waiter> _waiting = [];
    private bool _leasing;
    private long _idleSince = time.GetTimestamp();
    private long _acquired;
    private long _refused;

    public RateLimit Limit => limit;

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

    /// <summary>Drops the spare permits (a rate-limited answer: they were scheduled before it).</summary>
    public void DropSpare()
    {
        lock (_gate)
        {
            _spare.Clear();
        }
    }

    protected override RateLimitLease AttemptAcquireCore(int permitCount)
    {
        var now = time.GetUtcNow().UtcTicks;
        lock (_gate)
        {
            DropStale(now);
            if (permitCount == 0 || (permitCount == 1 && _spare.TryPeek(out var at) && at <= now))
            {
                if (permitCount == 1)
                {
                    _spare.Dequeue();
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

        while (true)
        {
            var (at, received, refusal) = await TakeAsync(permitCount, cancellationToken);
            if (refusal is not null)
            {
                lock (_gate)
                {
                    _refused++;
                }

                return new Lease(false, refusal.NextFree - time.GetUtcNow());
            }

            var wait = new DateTimeOffset(at, TimeSpan.Zero) - time.GetUtcNow();
            if (wait > TimeSpan.Zero)
            {
                try
                {
                    await Task.Delay(wait, time, cancellationToken);
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

            // A permit is used in its own slot (or right after it arrived): one woken much later (a pause of the
            // process) would crowd a later second, so it is dropped and the call asks again.
            if (time.GetUtcNow().UtcTicks <= Math.Max(at, received) + Stale.Ticks)
            {
                lock (_gate)
                {
                    _acquired++;
                }

                return Lease.Acquired;
            }
        }
    }

    // A spare permit, or one leased for this call (with when the lease arrived), or the grain's refusal.
    private async Task<(long At, long Received, RateGrant? Refusal)> TakeAsync(int permitCount, CancellationToken cancellationToken)
    {
        Waiter waiter;
        var lease = false;
        lock (_gate)
        {
            var now = time.GetUtcNow().UtcTicks;
            DropStale(now);
            if (permitCount == 1 && _spare.TryDequeue(out var spare))
            {
                return (spare, now, null);
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
            var (at, refusal) = await waiter.Result.Task.WaitAsync(cancellationToken);
            return (at, time.GetUtcNow().UtcTicks, refusal);
        }
        catch (OperationCanceledException)
        {
            Abandon(waiter);
            throw;
        }
    }

    private void DropStale(long now)
    {
        while (_spare.TryPeek(out var at) && at < now - Stale.Ticks)
        {
            _spare.Dequeue();
        }
    }

    private void Spare(long at)
    {
        lock (_gate)
        {
            _spare.Enqueue(at);
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

        if (!waiter.Result.TrySetCanceled() && waiter.Permits == 1 && waiter.Result.Task.Result is { Refusal: null } granted)
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
            try
            {
                grant = await grain.LeaseAsync(limit.Spec, amounts, time.GetUtcNow() + maxWait);
            }
            catch (Exception e)
            {
                foreach (var waiter in batch)
                {
                    waiter.Result.TrySetException(e);
                }

                continue;
            }

            for (var i = 0; i < batch.Count; i++)
            {
                var granted = i < grant.At.Length;
                if (!batch[i].Result.TrySetResult(granted ? (grant.At[i], null) : (0, grant)) && granted && batch[i].Permits == 1)
                {
                    Spare(grant.At[i]);
                }
            }

            for (var i = batch.Count; i < grant.At.Length; i++)
            {
                Spare(grant.At[i]);
            }
        }
    }

    private sealed class Waiter(int permits)
    {
        public int Permits { get; } = permits;

        public TaskCompletionSource<(long At, RateGrant? Refusal)> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
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
