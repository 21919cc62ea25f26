using Microsoft.Extensions.Options;
using Spine.Errors;
using Spine.Identity;

namespace Spine.Budgets;

/// <summary>What the budget grain keeps in PostgreSQL.</summary>
[GenerateSerializer, Alias("spine.BudgetRecord")]
public sealed class BudgetRecord
{
    [Id(0)] public BudgetCeilings Ceilings { get; set; } = new();

    /// <summary>When the current daily window began.</summary>
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
/// A reservation is held until its call settles or releases it, or until it expires. Settling counts only a
/// reservation the record still has (held or expired): a settlement sent again (a caller's retry, a resuming run
/// sending its journaled settlements) finds none and changes nothing, and the record stays the size of the
/// calls in flight, not of the account's history.
/// </remarks>
public sealed class BudgetGrain(
    [PersistentState("budget", "spine")] IPersistentState<BudgetRecord> record,
    IOptions<BudgetOptions> options,
    TimeProvider time) : Grain, IBudgetGrain
{
    /// <summary>How long an expired reservation waits for a late settlement before it is forgotten.</summary>
    private static readonly TimeSpan ExpiredKept = TimeSpan.FromDays(7);

    /// <summary>How many expired reservations are kept at most (the oldest go first).</summary>
    private const int MaxExpiredKept = 10_000;

    private BudgetRecord State => record.State;

    /// <inheritdoc />
    public async Task<BudgetView> GetAsync()
    {
        if (!record.RecordExists)
        {
            throw new UnknownAccountException(this.GetPrimaryKeyString());
        }

        if (Roll())
        {
            await record.WriteStateAsync();
        }

        return View();
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
        State.Ceilings = ceilings;
        State.SetBy = actor;
        await record.WriteStateAsync();
        return View();
    }

    /// <inheritdoc />
    public async Task<BudgetVerdict> ReserveAsync(BudgetReservation reservation)
    {
        ArgumentNullException.ThrowIfNull(reservation);
        if (reservation.Tokens < 0 || reservation.Cost < 0 || reservation.Fallback is { Tokens: < 0 } or { Cost: < 0 })
        {
            throw new InvalidPayloadException("budget reservation", "tokens and cost may not be negative");
        }

        var changed = Roll();
        var key = Key(reservation.RunId, reservation.Step);
        if (State.Reservations.TryGetValue(key, out var held) && !held.Expired)
        {
            // A retry or re-execution of a call that holds its reservation: answered as the first was.
            if (changed)
            {
                await record.WriteStateAsync();
            }

            var fallback = reservation.Fallback is { } f && held.Tokens == f.Tokens && held.Cost == f.Cost && (held.Tokens != reservation.Tokens || held.Cost != reservation.Cost);
            return Verdict(true, null, 0, 0) with { Fallback = fallback };
        }

        var before = UsedFraction(0, 0);
        var primaryRefusal = Refusal(reservation.Tokens, reservation.Cost);
        var useFallback = reservation.Fallback is { } alternative
            && (before >= alternative.At || primaryRefusal is not null)
            && Refusal(alternative.Tokens, alternative.Cost) is null;
        if (!useFallback && primaryRefusal is { } reason)
        {
            if (changed)
            {
                await record.WriteStateAsync();
            }

            return Verdict(false, reason.Text, reservation.Tokens, reservation.Cost) with { UsedBefore = before, DailyOnly = reason.DailyOnly };
        }

        var (tokens, cost) = useFallback ? (reservation.Fallback!.Tokens, reservation.Fallback.Cost) : (reservation.Tokens, reservation.Cost);
        State.Reservations[key] = new HeldReservation(tokens, cost, time.GetUtcNow() + options.Value.ReservationTtl);
        await record.WriteStateAsync();
        return Verdict(true, null, 0, 0) with { Fallback = useFallback, UsedBefore = before };
    }

    /// <inheritdoc />
    public Task<BudgetView> SettleAsync(string runId, int step, long tokens, decimal cost) =>
        SettleAllAsync([new BudgetSettlement(runId, step, tokens, cost)]);

    /// <inheritdoc />
    public async Task<BudgetView> SettleAllAsync(IReadOnlyList<BudgetSettlement> settlements)
    {
        var changed = Roll() | Settle(settlements);
        if (changed)
        {
            await record.WriteStateAsync();
        }

        return View();
    }

    /// <inheritdoc />
    public async Task<BudgetView> ReleaseAsync(string runId, int step)
    {
        var changed = Roll() | State.Reservations.Remove(Key(runId, step));
        if (changed)
        {
            await record.WriteStateAsync();
        }

        return View();
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

        if (changed)
        {
            await record.WriteStateAsync();
        }

        return View();
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

    private static string Key(string runId, int step) => runId + "/" + step.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Starts a new UTC day and expires reservations past their time; true when anything changed.</summary>
    private bool Roll()
    {
        var now = time.GetUtcNow();
        var window = WindowLength;
        var midnight = new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        var start = midnight + window * Math.Floor((now - midnight) / window);
        var changed = false;
        if (State.WindowStart != start)
        {
            State.WindowStart = start;
            State.TokensToday = 0;
            State.CostToday = 0;
            changed = true;
        }

        List<string>? forget = null;
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
            forget.AddRange(State.Reservations.Where(r => r.Value.Expired && !forget.Contains(r.Key))
                .OrderBy(r => r.Value.ExpiresAt).Take(expired - forget.Count - MaxExpiredKept).Select(r => r.Key));
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

    private (string Text, bool DailyOnly)? Refusal(long tokens, decimal cost)
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

        // A call that passes a total ceiling never fits; one that passes only a daily one fits once the day is over
        // (unless it is larger than the ceiling itself).
        if (total is not null)
        {
            return (total, false);
        }

        if (daily is null)
        {
            return null;
        }

        var fitsADay = (c.DailyTokens is not { } dt || tokens <= dt) && (c.DailyCost is not { } dc || cost <= dc);
        return (daily, fitsADay);
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
