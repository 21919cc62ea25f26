using Microsoft.Extensions.Options;
using Spine.Errors;
using Spine.Identity;

namespace Spine.Budgets;

/// <summary>What the budget grain keeps in PostgreSQL.</summary>
[GenerateSerializer, Alias("spine.BudgetRecord")]
public sealed class BudgetRecord
{
    [Id(0)] public BudgetCeilings Ceilings { get; set; } = new();

    /// <summary>The UTC day the daily figures were for, as records before configurable windows kept it.</summary>
    [Id(1)] public DateOnly Day { get; set; }

    /// <summary>When the current daily window began (unset in a record from before windows: then <see cref="Day"/>'s midnight).</summary>
    [Id(8)] public DateTimeOffset WindowStart { get; set; }

    [Id(2)] public long TokensToday { get; set; }

    [Id(3)] public decimal CostToday { get; set; }

    [Id(4)] public long TokensTotal { get; set; }

    [Id(5)] public decimal CostTotal { get; set; }

    /// <summary>The calls in flight: their size is bounded by the calls in flight, not by the account's history.</summary>
    [Id(6)] public Dictionary<string, HeldReservation> Reservations { get; set; } = new(StringComparer.Ordinal);

    [Id(7)] public SpineActor? SetBy { get; set; }
}

/// <summary>A call's reserved worst case; an expired one is kept a while so that a late settlement still counts.</summary>
[GenerateSerializer, Immutable, Alias("spine.HeldReservation")]
public sealed record HeldReservation([property: Id(0)] long Tokens, [property: Id(1)] decimal Cost, [property: Id(2)] DateTimeOffset ExpiresAt)
{
    /// <summary>Past its time: it no longer holds budget, but its run may still settle it.</summary>
    [Id(3)] public bool Expired { get; init; }
}

/// <summary>
/// One account's budget (see <see cref="IBudgetGrain"/>). Calls are handled one at a time, so reservations can never
/// together exceed a ceiling; every change is written to PostgreSQL before it is answered.
/// </summary>
/// <remarks>
/// Calls interleave (the grain is reentrant) so that changes made while a write is in flight go to PostgreSQL
/// together in the next one: each call changes the state in one turn, before its first await (so reservations
/// are checked and taken atomically), then waits until a write that includes its change has committed. Writes
/// never overlap, and each stores a copy of the state taken in one turn.
///
/// A reservation is held until its call settles or releases it, or until it expires. Settling counts only a
/// reservation the record still has (held or expired): a settlement sent again (a caller's retry, a resuming run
/// sending its journaled settlements) finds none and changes nothing, and the record stays the size of the
/// calls in flight, not of the account's history.
/// </remarks>
[Orleans.Concurrency.Reentrant]
public sealed class BudgetGrain(
    [PersistentState("budget", "spine")] IPersistentState<BudgetRecord> record,
    IOptions<BudgetOptions> options,
    TimeProvider time) : Grain, IBudgetGrain
{
    private BudgetRecord? _live;

    // Changes are counted: a call waits until the count it made is stored.
    private long _changes;
    private long _stored;
    private Task? _writing;
    private bool _gaugeDirty;

    /// <summary>How long an expired reservation waits for a late settlement before it is forgotten.</summary>
    private static readonly TimeSpan ExpiredKept = TimeSpan.FromDays(7);

    /// <summary>How many expired reservations are kept at most (the oldest go first).</summary>
    private const int MaxExpiredKept = 10_000;

    /// <summary>The state calls change; what is written is a copy of it.</summary>
    private BudgetRecord State => _live ??= record.State;

    /// <summary>
    /// Waits until every change made so far (this call's, when it <paramref name="changed"/> anything, and the ones
    /// before it) is stored: joins the write in flight when it includes them, else the next one. A failed write fails every call waiting on it (each call is idempotent, and its caller asks again).
    /// </summary>
    private async Task DurableAsync(bool changed)
    {
        var wanted = changed ? ++_changes : _changes;
        while (_stored < wanted)
        {
            var writing = _writing ?? WriteAsync();

            // A write that completed at once (it cleared _writing before this assignment) is not kept as in flight.
            _writing = writing.IsCompleted ? null : writing;
            await writing;
        }
    }

    private async Task WriteAsync()
    {
        try
        {
            var upTo = _changes;
            record.State = Copy(State);
            await record.WriteStateAsync();
            _stored = Math.Max(_stored, upTo);
            _gaugeDirty = true;
        }
        catch (Orleans.Storage.InconsistentStateException)
        {
            // The stored record moved under this activation (a write whose answer was lost, another activation):
            // start again from what is stored; callers ask again and find it.
            DeactivateOnIdle();
            throw;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // PostgreSQL unreachable or refusing: callers get a transient error they can carry (the driver's own
            // exception types do not cross silos), and ask again.
            throw new StorageUnavailableException("budget write", $"account {this.GetPrimaryKeyString()}: {e.GetType().Name}: {e.Message}");
        }
        finally
        {
            _writing = null;
        }
    }

    /// <inheritdoc />
    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (record.RecordExists)
        {
            Telemetry.SpineGauges.Budget(this, View());
        }

        // What the account may still spend, for spine.budget.remaining.*: at most once a second, after a write.
        this.RegisterGrainTimer(() =>
        {
            // Also when the window turned with no call to roll it, so that the gauge shows the new window's allowance.
            if (_gaugeDirty || (record.RecordExists && time.GetUtcNow() >= State.WindowStart + WindowLength))
            {
                _gaugeDirty = false;
                Roll();
                Telemetry.SpineGauges.Budget(this, View());
            }

            return Task.CompletedTask;
        }, new GrainTimerCreationOptions(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1)) { Interleave = false, KeepAlive = false });
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        Telemetry.SpineGauges.Withdraw(this, this.GetPrimaryKeyString());
        return Task.CompletedTask;
    }

    private static BudgetRecord Copy(BudgetRecord live) => new()
    {
        Ceilings = live.Ceilings,
        Day = DateOnly.FromDateTime(live.WindowStart.UtcDateTime),
        WindowStart = live.WindowStart,
        TokensToday = live.TokensToday,
        CostToday = live.CostToday,
        TokensTotal = live.TokensTotal,
        CostTotal = live.CostTotal,
        Reservations = new Dictionary<string, HeldReservation>(live.Reservations, StringComparer.Ordinal),
        SetBy = live.SetBy,
    };

    /// <inheritdoc />
    public async Task<BudgetView> GetAsync()
    {
        if (!record.RecordExists)
        {
            throw new UnknownAccountException(this.GetPrimaryKeyString());
        }

        var changed = Roll();
        var view = View();
        await DurableAsync(changed);
        return view;
    }

    /// <inheritdoc />
    public async Task<BudgetView> SetAsync(BudgetCeilings ceilings, SpineActor? actor)
    {
        ArgumentNullException.ThrowIfNull(ceilings);
        actor?.Check();
        if (ceilings.DailyTokens is < 0 || ceilings.TotalTokens is < 0 || ceilings.DailyCost is < 0 || ceilings.TotalCost is < 0)
        {
            throw new InvalidPayloadException($"budget ceilings of account '{this.GetPrimaryKeyString()}'", "a ceiling may not be negative (leave it out for none)");
        }

        if (ceilings.Window is { } window && (window < TimeSpan.FromSeconds(1) || window > TimeSpan.FromDays(1) || TimeSpan.FromDays(1).Ticks % window.Ticks != 0))
        {
            throw new InvalidPayloadException($"budget ceilings of account '{this.GetPrimaryKeyString()}'", $"the window {window} must be between 1 second and a day and divide a day evenly (an hour, 15 minutes)");
        }

        Roll();
        if (ceilings.Window != State.Ceilings.Window)
        {
            // A new window length starts counting from the window it puts now in, keeping what the current one spent.
            State.Ceilings = ceilings;
            State.WindowStart = WindowOf(time.GetUtcNow());
        }

        State.Ceilings = ceilings;
        State.SetBy = actor;
        var set = View();
        await DurableAsync(true);
        Telemetry.SpineGauges.Budget(this, set);
        return set;
    }

    /// <inheritdoc />
    public async Task<BudgetVerdict> ReserveAsync(BudgetReservation reservation)
    {
        ArgumentNullException.ThrowIfNull(reservation);
        if (reservation.Tokens < 0 || reservation.Cost < 0 || reservation.Fallback is { Tokens: < 0 } or { Cost: < 0 })
        {
            throw new InvalidPayloadException("budget reservation", "tokens and cost may not be negative");
        }

        if (reservation.Settlements?.Any(s => s.RunId != reservation.RunId) == true)
        {
            throw new InvalidPayloadException("budget reservation", $"the settlements a reservation carries must be of its run {reservation.RunId}");
        }

        var changed = Roll() | (reservation.Settlements is { Count: > 0 } earlier && Settle(earlier));
        var key = Key(reservation.RunId, reservation.Step);
        if (reservation.Force)
        {
            // A call the run's journal already decided: it runs either way, so its hold is recorded even past a ceiling.
            var existing = State.Reservations.GetValueOrDefault(key);
            State.Reservations[key] = new HeldReservation(existing is { Expired: false } ? existing.Tokens : reservation.Tokens,
                existing is { Expired: false } ? existing.Cost : reservation.Cost, time.GetUtcNow() + options.Value.ReservationTtl);
            var forced = Verdict(true, null, 0, 0);
            await DurableAsync(true);
            return forced;
        }

        if (State.Reservations.TryGetValue(key, out var held) && !held.Expired)
        {
            var fallback = reservation.Fallback is { } f && held.Tokens == f.Tokens && held.Cost == f.Cost && (held.Tokens != reservation.Tokens || held.Cost != reservation.Cost);
            if (fallback || (reservation.Tokens <= held.Tokens && reservation.Cost <= held.Cost))
            {
                // A retry or re-execution of a call that holds its reservation: answered as the first was, and held longer.
                State.Reservations[key] = held with { ExpiresAt = time.GetUtcNow() + options.Value.ReservationTtl };
                var again = Verdict(true, null, 0, 0) with { Fallback = fallback };
                await DurableAsync(true);
                return again;
            }

            // It asks for more than it holds (its run decided the call anew after a crash, with a dearer client or a
            // longer prompt): weighed again as a new reservation, without its old hold.
            State.Reservations.Remove(key);
            changed = true;
        }

        var before = UsedFraction(0, 0);
        var primaryRefusal = Refusal(reservation.Tokens, reservation.Cost);
        var useFallback = reservation.Fallback is { } alternative
            && (before >= alternative.At || primaryRefusal is not null)
            && Refusal(alternative.Tokens, alternative.Cost) is null;
        if (!useFallback && primaryRefusal is { } reason)
        {
            var refused = Verdict(false, reason.Text, reservation.Tokens, reservation.Cost) with
            {
                UsedBefore = before,
                DailyOnly = reason.DailyOnly,
                RoomAt = reason.ReservationsOnly ? Min(time.GetUtcNow() + RoomCheck, State.WindowStart + WindowLength) : null,
            };
            await DurableAsync(changed);
            return refused;
        }

        var (tokens, cost) = useFallback ? (reservation.Fallback!.Tokens, reservation.Fallback.Cost) : (reservation.Tokens, reservation.Cost);
        State.Reservations[key] = new HeldReservation(tokens, cost, time.GetUtcNow() + options.Value.ReservationTtl);
        var granted = Verdict(true, null, 0, 0) with { Fallback = useFallback, UsedBefore = before };
        await DurableAsync(true);
        return granted;
    }

    /// <inheritdoc />
    public Task<BudgetView> SettleAsync(string runId, int step, long tokens, decimal cost) =>
        SettleAllAsync([new BudgetSettlement(runId, step, tokens, cost)]);

    /// <inheritdoc />
    public async Task<BudgetView> SettleAllAsync(IReadOnlyList<BudgetSettlement> settlements)
    {
        var changed = Roll() | Settle(settlements);
        var after = View();
        await DurableAsync(changed);
        return after;
    }

    /// <inheritdoc />
    public async Task<BudgetView> ReleaseAsync(string runId, int step)
    {
        var changed = Roll() | State.Reservations.Remove(Key(runId, step));
        var after = View();
        await DurableAsync(changed);
        return after;
    }

    /// <inheritdoc />
    public async Task<BudgetView> EndRunAsync(string runId, IReadOnlyList<BudgetSettlement> settlements)
    {
        ArgumentException.ThrowIfNullOrEmpty(runId);
        if (settlements.Any(s => s.RunId != runId))
        {
            throw new InvalidPayloadException("budget settlement", $"every settlement of run {runId} must be of that run");
        }

        var changed = Roll() | Settle(settlements);
        var prefix = runId + "/";
        foreach (var key in State.Reservations.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList())
        {
            changed |= State.Reservations.Remove(key);
        }

        var after = View();
        await DurableAsync(changed);
        return after;
    }

    /// <summary>Counts the settlements whose reservation is still here (held or expired); true when any was.</summary>
    private bool Settle(IReadOnlyList<BudgetSettlement> settlements)
    {
        ArgumentNullException.ThrowIfNull(settlements);
        if (settlements.Any(s => s.Tokens < 0 || s.Cost < 0))
        {
            throw new InvalidPayloadException("budget settlement", "tokens and cost may not be negative");
        }

        var changed = false;
        foreach (var settlement in settlements)
        {
            if (State.Reservations.Remove(Key(settlement.RunId, settlement.Step)))
            {
                State.TokensToday += settlement.Tokens;
                State.CostToday += settlement.Cost;
                State.TokensTotal += settlement.Tokens;
                State.CostTotal += settlement.Cost;
                changed = true;
            }
        }

        return changed;
    }

    private TimeSpan WindowLength => State.Ceilings.Window ?? TimeSpan.FromDays(1);

    /// <summary>How soon a call refused only for other calls' reservations may ask again.</summary>
    private static readonly TimeSpan RoomCheck = TimeSpan.FromSeconds(10);

    /// <summary>The start of the window <paramref name="at"/> is in: UTC midnight, plus whole windows.</summary>
    private DateTimeOffset WindowOf(DateTimeOffset at)
    {
        var midnight = new DateTimeOffset(at.UtcDateTime.Date, TimeSpan.Zero);
        return midnight + (WindowLength * Math.Floor((at - midnight) / WindowLength));
    }

    private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a <= b ? a : b;

    private static string Key(string runId, int step) => runId + "/" + step.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Starts a new UTC day and expires reservations past their time; true when anything changed.</summary>
    private bool Roll()
    {
        var now = time.GetUtcNow();
        if (State.WindowStart == default && State.Day != default)
        {
            State.WindowStart = new DateTimeOffset(State.Day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        }

        var start = WindowOf(now);
        var changed = false;
        if (State.WindowStart < start)
        {
            State.WindowStart = start;
            State.TokensToday = 0;
            State.CostToday = 0;
            changed = true;
        }

        HashSet<string>? forget = null;
        var expired = 0;
        foreach (var (key, held) in State.Reservations)
        {
            if (held.Expired)
            {
                expired++;
                if (held.ExpiresAt + ExpiredKept <= now)
                {
                    (forget ??= []).Add(key);
                }
            }
            else if (held.ExpiresAt <= now)
            {
                // Its run died and did not come back in time: the budget is free again, but a late settlement still counts.
                State.Reservations[key] = held with { Expired = true };
                expired++;
                changed = true;
            }
        }

        if (expired - (forget?.Count ?? 0) > MaxExpiredKept)
        {
            forget ??= [];
            forget.UnionWith(State.Reservations.Where(r => r.Value.Expired && !forget.Contains(r.Key))
                .OrderBy(r => r.Value.ExpiresAt).Take(expired - forget.Count - MaxExpiredKept).Select(r => r.Key).ToList());
        }

        foreach (var key in forget ?? [])
        {
            State.Reservations.Remove(key);
            changed = true;
        }

        return changed;
    }

    private (long Tokens, decimal Cost) Reserved()
    {
        long tokens = 0;
        decimal cost = 0;
        foreach (var held in State.Reservations.Values)
        {
            if (!held.Expired)
            {
                tokens += held.Tokens;
                cost += held.Cost;
            }
        }

        return (tokens, cost);
    }

    private (string Text, bool DailyOnly, bool ReservationsOnly)? Refusal(long tokens, decimal cost)
    {
        var (reservedTokens, reservedCost) = Reserved();
        var c = State.Ceilings;
        string? daily = null, total = null;
        if (c.TotalTokens is { } totalTokens && State.TokensTotal + reservedTokens + tokens > totalTokens)
        {
            total = $"the total token ceiling ({totalTokens}) would be passed: {State.TokensTotal} spent, {reservedTokens} reserved, {tokens} asked";
        }
        else if (c.TotalCost is { } totalCost && State.CostTotal + reservedCost + cost > totalCost)
        {
            total = $"the total cost ceiling ({totalCost}) would be passed: {State.CostTotal} spent, {reservedCost} reserved, {cost} asked";
        }

        if (c.DailyTokens is { } dailyTokens && State.TokensToday + reservedTokens + tokens > dailyTokens)
        {
            daily = $"the daily token ceiling ({dailyTokens}) would be passed: {State.TokensToday} spent, {reservedTokens} reserved, {tokens} asked";
        }
        else if (c.DailyCost is { } dailyCost && State.CostToday + reservedCost + cost > dailyCost)
        {
            daily = $"the daily cost ceiling ({dailyCost}) would be passed: {State.CostToday} spent, {reservedCost} reserved, {cost} asked";
        }

        if (total is null && daily is null)
        {
            return null;
        }

        // Whether what is spent leaves room for the call, so that only reservations (which settle for what their calls
        // use, or expire) stand in the way.
        var reservationsOnly = (c.TotalTokens is not { } tt || State.TokensTotal + tokens <= tt) && (c.TotalCost is not { } tc || State.CostTotal + cost <= tc)
            && (c.DailyTokens is not { } dt || State.TokensToday + tokens <= dt) && (c.DailyCost is not { } dc || State.CostToday + cost <= dc);

        // A call that passes a total ceiling never fits; one that passes only a daily one fits once the day is over
        // (unless it is larger than the ceiling itself).
        if (total is not null)
        {
            return (total, false, reservationsOnly);
        }

        var fitsADay = (c.DailyTokens is not { } dayTokens || tokens <= dayTokens) && (c.DailyCost is not { } dayCost || cost <= dayCost);
        return (daily!, fitsADay, reservationsOnly);
    }

    private double UsedFraction(long extraTokens, decimal extraCost)
    {
        var (reservedTokens, reservedCost) = Reserved();
        var c = State.Ceilings;
        var max = 0.0;
        void Add(decimal used, decimal? ceiling)
        {
            if (ceiling is { } limit)
            {
                max = Math.Max(max, limit == 0 ? (used > 0 ? double.PositiveInfinity : 1) : (double)(used / limit));
            }
        }

        Add(State.TokensToday + reservedTokens + extraTokens, c.DailyTokens);
        Add(State.TokensTotal + reservedTokens + extraTokens, c.TotalTokens);
        Add(State.CostToday + reservedCost + extraCost, c.DailyCost);
        Add(State.CostTotal + reservedCost + extraCost, c.TotalCost);
        return max;
    }

    private BudgetVerdict Verdict(bool granted, string? reason, long extraTokens, decimal extraCost) => new()
    {
        Granted = granted,
        Reason = reason,
        UsedFraction = granted ? UsedFraction(0, 0) : UsedFraction(extraTokens, extraCost),
        WindowEnds = State.WindowStart + WindowLength,
    };
    private BudgetView View()
    {
        var (reservedTokens, reservedCost) = Reserved();
        var c = State.Ceilings;
        return new BudgetView
        {
            AccountId = this.GetPrimaryKeyString(),
            Ceilings = c,
            Day = DateOnly.FromDateTime(State.WindowStart.UtcDateTime),
            WindowStart = State.WindowStart,
            WindowEnds = State.WindowStart + WindowLength,
            SpentTokensToday = State.TokensToday,
            SpentCostToday = State.CostToday,
            SpentTokensTotal = State.TokensTotal,
            SpentCostTotal = State.CostTotal,
            ReservedTokens = reservedTokens,
            ReservedCost = reservedCost,
            Reservations = State.Reservations.Values.Count(r => !r.Expired),
            RemainingTokens = Min(c.DailyTokens - State.TokensToday - reservedTokens, c.TotalTokens - State.TokensTotal - reservedTokens),
            RemainingCost = Min(c.DailyCost - State.CostToday - reservedCost, c.TotalCost - State.CostTotal - reservedCost),
            SetBy = State.SetBy,
        };
    }

    private static T? Min<T>(T? a, T? b)
        where T : struct, IComparable<T> =>
        a is null ? b : b is null ? a : a.Value.CompareTo(b.Value) <= 0 ? a : b;
}
