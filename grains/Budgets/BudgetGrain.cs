using Microsoft.Extensions.Options;
using Spine.Errors;
using Spine.Identity;

namespace Spine.Budgets;

/// <summary>How long a reservation lives without being settled or released (<c>Spine:Budgets</c>).</summary>
public sealed class BudgetOptions
{
    /// <summary>A reservation whose run neither settles nor releases it within this time expires (its run died and never came back).</summary>
    public TimeSpan ReservationTtl { get; set; } = TimeSpan.FromMinutes(15);
}

/// <summary>What the budget grain keeps in PostgreSQL.</summary>
[GenerateSerializer, Alias("spine.BudgetRecord")]
public sealed class BudgetRecord
{
    [Id(0)] public BudgetCeilings Ceilings { get; set; } = new();

    [Id(1)] public DateOnly Day { get; set; }

    [Id(2)] public long TokensToday { get; set; }

    [Id(3)] public decimal CostToday { get; set; }

    [Id(4)] public long TokensTotal { get; set; }

    [Id(5)] public decimal CostTotal { get; set; }

    /// <summary>The calls in flight: their size is bounded by the calls in flight, not by the account's history.</summary>
    [Id(6)] public Dictionary<string, HeldReservation> Reservations { get; set; } = new(StringComparer.Ordinal);

    [Id(7)] public SpineActor? SetBy { get; set; }
}

/// <summary>A call's reserved worst case.</summary>
[GenerateSerializer, Immutable, Alias("spine.HeldReservation")]
public sealed record HeldReservation([property: Id(0)] long Tokens, [property: Id(1)] decimal Cost, [property: Id(2)] DateTimeOffset ExpiresAt);

/// <summary>
/// One account's budget (see <see cref="IBudgetGrain"/>). Calls are handled one at a time, so reservations can never
/// together exceed a ceiling; every change is written to PostgreSQL before it is answered.
/// </summary>
public sealed class BudgetGrain(
    [PersistentState("budget", "spine")] IPersistentState<BudgetRecord> record,
    IOptions<BudgetOptions> options,
    TimeProvider time) : Grain, IBudgetGrain
{
    /// <summary>How many settled keys the activation remembers to count a repeated settlement once.</summary>
    private const int RememberedSettlements = 100_000;

    // In memory only: every write stores the whole record, so it must not grow with the account's history. A run
    // journals its settlement and never sends it again after a crash; this catches a caller's retry.
    private readonly HashSet<string> _settled = new(StringComparer.Ordinal);
    private readonly Queue<string> _settledOrder = new();

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
        if (reservation.Tokens < 0 || reservation.Cost < 0)
        {
            throw new InvalidPayloadException("budget reservation", "tokens and cost may not be negative");
        }

        var changed = Roll();
        var key = Key(reservation.RunId, reservation.Step);
        if (State.Reservations.ContainsKey(key) || _settled.Contains(key))
        {
            // A retry or re-execution of a call that holds its reservation (or already spent it).
            if (changed)
            {
                await record.WriteStateAsync();
            }

            return Verdict(true, null, 0, 0);
        }

        if (Refusal(reservation.Tokens, reservation.Cost) is { } reason)
        {
            if (changed)
            {
                await record.WriteStateAsync();
            }

            return Verdict(false, reason, reservation.Tokens, reservation.Cost);
        }

        State.Reservations[key] = new HeldReservation(reservation.Tokens, reservation.Cost, time.GetUtcNow() + options.Value.ReservationTtl);
        await record.WriteStateAsync();
        return Verdict(true, null, 0, 0);
    }

    /// <inheritdoc />
    public async Task<BudgetView> SettleAsync(string runId, int step, long tokens, decimal cost)
    {
        if (tokens < 0 || cost < 0)
        {
            throw new InvalidPayloadException("budget settlement", "tokens and cost may not be negative");
        }

        Roll();
        var key = Key(runId, step);
        if (_settled.Add(key))
        {
            _settledOrder.Enqueue(key);
            if (_settledOrder.Count > RememberedSettlements)
            {
                _settled.Remove(_settledOrder.Dequeue());
            }

            State.Reservations.Remove(key);
            State.TokensToday += tokens;
            State.CostToday += cost;
            State.TokensTotal += tokens;
            State.CostTotal += cost;
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

    private static string Key(string runId, int step) => runId + "/" + step.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Starts a new UTC day and expires reservations past their time; true when anything changed.</summary>
    private bool Roll()
    {
        var now = time.GetUtcNow();
        var today = DateOnly.FromDateTime(now.UtcDateTime);
        var changed = false;
        if (State.Day != today)
        {
            State.Day = today;
            State.TokensToday = 0;
            State.CostToday = 0;
            changed = true;
        }

        foreach (var expired in State.Reservations.Where(r => r.Value.ExpiresAt <= now).Select(r => r.Key).ToList())
        {
            State.Reservations.Remove(expired);
            changed = true;
        }

        return changed;
    }

    private (long Tokens, decimal Cost) Reserved() =>
        (State.Reservations.Values.Sum(r => r.Tokens), State.Reservations.Values.Sum(r => r.Cost));

    private string? Refusal(long tokens, decimal cost)
    {
        var (reservedTokens, reservedCost) = Reserved();
        var c = State.Ceilings;
        if (c.DailyTokens is { } dailyTokens && State.TokensToday + reservedTokens + tokens > dailyTokens)
        {
            return $"the daily token ceiling ({dailyTokens}) would be passed: {State.TokensToday} spent, {reservedTokens} reserved, {tokens} asked";
        }

        if (c.TotalTokens is { } totalTokens && State.TokensTotal + reservedTokens + tokens > totalTokens)
        {
            return $"the total token ceiling ({totalTokens}) would be passed: {State.TokensTotal} spent, {reservedTokens} reserved, {tokens} asked";
        }

        if (c.DailyCost is { } dailyCost && State.CostToday + reservedCost + cost > dailyCost)
        {
            return $"the daily cost ceiling ({dailyCost}) would be passed: {State.CostToday} spent, {reservedCost} reserved, {cost} asked";
        }

        if (c.TotalCost is { } totalCost && State.CostTotal + reservedCost + cost > totalCost)
        {
            return $"the total cost ceiling ({totalCost}) would be passed: {State.CostTotal} spent, {reservedCost} reserved, {cost} asked";
        }

        return null;
    }

    private BudgetVerdict Verdict(bool granted, string? reason, long extraTokens, decimal extraCost)
    {
        var (reservedTokens, reservedCost) = Reserved();
        var c = State.Ceilings;
        var fractions = new List<double>();
        void Add(decimal used, decimal? ceiling)
        {
            if (ceiling is { } limit)
            {
                fractions.Add(limit == 0 ? (used > 0 ? double.PositiveInfinity : 1) : (double)(used / limit));
            }
        }

        Add(State.TokensToday + reservedTokens + (granted ? 0 : extraTokens), c.DailyTokens);
        Add(State.TokensTotal + reservedTokens + (granted ? 0 : extraTokens), c.TotalTokens);
        Add(State.CostToday + reservedCost + (granted ? 0 : extraCost), c.DailyCost);
        Add(State.CostTotal + reservedCost + (granted ? 0 : extraCost), c.TotalCost);
        return new BudgetVerdict
        {
            Granted = granted,
            Reason = reason,
            UsedFraction = fractions.Count == 0 ? 0 : fractions.Max(),
            WindowEnds = new DateTimeOffset(State.Day.AddDays(1).ToDateTime(TimeOnly.MinValue), TimeSpan.Zero),
        };
    }

    private BudgetView View()
    {
        var (reservedTokens, reservedCost) = Reserved();
        var c = State.Ceilings;
        return new BudgetView
        {
            AccountId = this.GetPrimaryKeyString(),
            Ceilings = c,
            Day = State.Day,
            SpentTokensToday = State.TokensToday,
            SpentCostToday = State.CostToday,
            SpentTokensTotal = State.TokensTotal,
            SpentCostTotal = State.CostTotal,
            ReservedTokens = reservedTokens,
            ReservedCost = reservedCost,
            Reservations = State.Reservations.Count,
            RemainingTokens = Min(c.DailyTokens - State.TokensToday - reservedTokens, c.TotalTokens - State.TokensTotal - reservedTokens),
            RemainingCost = Min(c.DailyCost - State.CostToday - reservedCost, c.TotalCost - State.CostTotal - reservedCost),
            SetBy = State.SetBy,
        };
    }

    private static T? Min<T>(T? a, T? b)
        where T : struct, IComparable<T> =>
        a is null ? b : b is null ? a : a.Value.CompareTo(b.Value) <= 0 ? a : b;
}
