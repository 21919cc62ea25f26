namespace Spine.RateLimits;

/// <summary>
/// The durable part of a limit: a mark no permit was scheduled at or after, kept ahead of the schedule, so that a
/// limit whose grain moves (its silo died) never grants again what the last activation had already granted.
/// </summary>
[GenerateSerializer, Alias("spine.RateLimitRecord")]
public sealed class RateLimitRecord
{
    /// <summary>No permit the grain granted is due at or after this time.</summary>
    [Id(0)] public DateTimeOffset Mark { get; set; }

    /// <summary>Until when a rate-limited answer holds every permit back.</summary>
    [Id(1)] public DateTimeOffset BlockedUntil { get; set; }
}

/// <summary>
/// One rate limit for the cluster (<see cref="IRateLimiterGrain"/>). The schedule lives in memory; only a mark
/// ahead of it is written, once it is passed, so a busy limit costs one write a second, not one per lease.
/// </summary>
public sealed class RateLimiterGrain(
    [PersistentState("ratelimit", "spine")] IPersistentState<RateLimitRecord> record,
    TimeProvider time) : Grain, IRateLimiterGrain
{
    /// <summary>How far ahead of the schedule the mark is written: the most a moved grain may hold back.</summary>
    internal static readonly TimeSpan MarkAhead = TimeSpan.FromSeconds(1);

    private static readonly TimeSpan MaxLead = TimeSpan.FromSeconds(1);

    private PermitSchedule? _schedule;
    private bool _used;
    private long _granted;
    private long _penalties;

    // Resumes from the mark: whatever the last activation granted is due before it.
    private PermitSchedule Schedule
    {
        get
        {
            if (_schedule is null)
            {
                _schedule = new PermitSchedule(record.State.Mark);
                _schedule.Block(record.State.BlockedUntil);
            }

            return _schedule;
        }
    }

    /// <inheritdoc />
    public async Task<RateGrant> LeaseAsync(RateSpec spec, long[] amounts, TimeSpan lead, DateTimeOffset horizon)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(amounts);
        if (!(spec.PerSecond > 0) || !(spec.Capacity >= 1) || double.IsInfinity(spec.PerSecond))
        {
            throw new ArgumentOutOfRangeException(nameof(spec), spec, "A rate limit needs a positive rate and a capacity of at least 1.");
        }

        foreach (var amount in amounts)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(amount, 1, nameof(amounts));
        }

        lead = lead < TimeSpan.Zero ? TimeSpan.Zero : lead > MaxLead ? MaxLead : lead;
        var schedule = Schedule;
        var planned = new PermitSchedule(schedule.FullAt);
        planned.Block(schedule.BlockedUntil);
        Grant(planned, spec, amounts, time.GetUtcNow() + lead, horizon);
        if (planned.FullAt >= record.State.Mark)
        {
            // Written before the permits are scheduled and handed out (a grain that moves after this never grants them
            // again), so that the write's time is not taken out of the first permits' slots.
            await WriteMarkAsync(planned.FullAt);
        }

        // Permits are scheduled from when they can reach the silo: one due sooner would arrive late.
        var now = time.GetUtcNow() + lead;
        var granted = Grant(schedule, spec, amounts, now, horizon);
        _used = true;
        if (schedule.FullAt >= record.State.Mark)
        {
            // The write above took longer than the mark's lead: it must cover these permits too before they go.
            await WriteMarkAsync(schedule.FullAt);
        }

        // A refusal says when each amount not granted would be free (a large model call waits longer than one request).
        var refused = amounts.Skip(granted.Length).Select(amount => schedule.FreeAt(spec, amount, now).UtcTicks).ToArray();
        var next = refused.Length > 0 ? new DateTimeOffset(refused[0], TimeSpan.Zero) : schedule.FreeAt(spec, 1, now);
        return new RateGrant(granted, next, schedule.BlockedUntil, refused, now - lead);
    }

    // Takes the amounts in order until one would not be free before the horizon.
    private long[] Grant(PermitSchedule schedule, RateSpec spec, long[] amounts, DateTimeOffset now, DateTimeOffset horizon)
    {
        var granted = new List<long>(amounts.Length);
        foreach (var amount in amounts)
        {
            if (schedule.FreeAt(spec, amount, now) > horizon)
            {
                break;
            }

            granted.Add(schedule.Take(spec, amount, now).UtcTicks);
        }

        if (schedule == _schedule)
        {
            _granted += amounts.Take(granted.Count).Sum();
        }

        return [.. granted];
    }

    // The mark in memory is the written one: after a failed write, the next lease writes again.
    private async Task WriteMarkAsync(DateTimeOffset fullAt)
    {
        var written = record.State.Mark;
        record.State.Mark = fullAt + MarkAhead;
        try
        {
            await record.WriteStateAsync();
        }
        catch
        {
            record.State.Mark = written;
            throw;
        }
    }

    /// <inheritdoc />
    public async Task PenalizeAsync(DateTimeOffset until)
    {
        _penalties++;
        if (until <= Schedule.BlockedUntil)
        {
            return;
        }

        Schedule.Block(until);
        var written = record.State.BlockedUntil;
        record.State.BlockedUntil = until;
        try
        {
            await record.WriteStateAsync();
        }
        catch
        {
            record.State.BlockedUntil = written;
            throw;
        }
    }

    /// <inheritdoc />
    public Task<RateLimitState> GetStateAsync()
    {
        var blocked = Schedule.BlockedUntil > time.GetUtcNow() ? Schedule.BlockedUntil : (DateTimeOffset?)null;
        var next = _used ? (DateTimeOffset?)Max(Schedule.FullAt, time.GetUtcNow()) : null;
        return Task.FromResult(new RateLimitState(next, blocked, _granted, _penalties));
    }

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;
}
