using Spine.Identity;

namespace Spine.Budgets;

/// <summary>An account's ceilings: tokens and cost per UTC day and in total. Null: no ceiling.</summary>
[GenerateSerializer, Immutable, Alias("spine.BudgetCeilings")]
public sealed record BudgetCeilings
{
    /// <summary>Tokens (input and output) per UTC day.</summary>
    [Id(0)] public long? DailyTokens { get; init; }

    /// <summary>Cost per UTC day, in the unit prices are configured in (for example US dollars).</summary>
    [Id(1)] public decimal? DailyCost { get; init; }

    /// <summary>Tokens in total.</summary>
    [Id(2)] public long? TotalTokens { get; init; }

    /// <summary>Cost in total.</summary>
    [Id(3)] public decimal? TotalCost { get; init; }

    /// <summary>
    /// How long the "daily" window is: a UTC day when null; a shorter one (an hour, a minute) that divides a day
    /// evenly starts at UTC midnight and at every multiple of it after.
    /// </summary>
    [Id(4)] public TimeSpan? Window { get; init; }
}

/// <summary>One run's own ceilings, carried by the run (its account's ceilings apply as well). Null: no ceiling.</summary>
[GenerateSerializer, Immutable, Alias("spine.RunBudget")]
public sealed record RunBudget
{
    /// <summary>Tokens (input and output) the run may use in all.</summary>
    [Id(0)] public long? MaxTokens { get; init; }

    /// <summary>What the run may cost in all.</summary>
    [Id(1)] public decimal? MaxCost { get; init; }
}

/// <summary>A reservation of the worst case a call may spend, keyed by the call (run and step).</summary>
/// <param name="RunId">The run.</param>
/// <param name="Step">The step: retries and re-executions of it share the reservation.</param>
/// <param name="Tokens">The most tokens the call may use.</param>
/// <param name="Cost">The most it may cost.</param>
/// <param name="Fallback">
/// A cheaper way to make the call (another chat client): reserved instead when the account has used at least
/// <see cref="BudgetFallback.At"/> of a ceiling, or when the call itself would not fit but its fallback does.
/// </param>
[GenerateSerializer, Immutable, Alias("spine.BudgetReservation")]
public sealed record BudgetReservation(
    [property: Id(0)] string RunId,
    [property: Id(1)] int Step,
    [property: Id(2)] long Tokens,
    [property: Id(3)] decimal Cost,
    [property: Id(4)] BudgetFallback? Fallback = null)
{
    /// <summary>
    /// The call runs whatever the answer (its run's journal decided it before): the grain holds it even past a
    /// ceiling, so that its settlement counts.
    /// </summary>
    [Id(5)] public bool Force { get; init; }

    /// <summary>
    /// Settlements of the same run's earlier calls, counted first in the same turn (each counts once, as by
    /// <see cref="IBudgetGrain.SettleAllAsync"/>): a run's previous call may still have its own settlement on the way.
    /// </summary>
    [Id(6)] public IReadOnlyList<BudgetSettlement>? Settlements { get; init; }
}

/// <summary>The worst case of a call's cheaper way, and from which used fraction of a ceiling it is preferred.</summary>
[GenerateSerializer, Immutable, Alias("spine.BudgetFallback")]
public sealed record BudgetFallback([property: Id(0)] long Tokens, [property: Id(1)] decimal Cost, [property: Id(2)] double At);

/// <summary>What a call used, to replace its reservation.</summary>
[GenerateSerializer, Immutable, Alias("spine.BudgetSettlement")]
public sealed record BudgetSettlement([property: Id(0)] string RunId, [property: Id(1)] int Step, [property: Id(2)] long Tokens, [property: Id(3)] decimal Cost);

/// <summary>The answer to a reservation.</summary>
[GenerateSerializer, Immutable, Alias("spine.BudgetVerdict")]
public sealed record BudgetVerdict
{
    /// <summary>Whether the call may go ahead (its worst case is reserved).</summary>
    [Id(0)] public bool Granted { get; init; }

    /// <summary>Why not, naming the ceiling, when refused.</summary>
    [Id(1)] public string? Reason { get; init; }

    /// <summary>The largest fraction of any ceiling that spent and reserved amounts use now, this reservation included when granted (0..1+).</summary>
    [Id(2)] public double UsedFraction { get; init; }

    /// <summary>When the daily window the verdict counted in ends (UTC midnight, or the end of a shorter window).</summary>
    [Id(3)] public DateTimeOffset WindowEnds { get; init; }

    /// <summary>The reservation's fallback was reserved instead of the call itself.</summary>
    [Id(4)] public bool Fallback { get; init; }

    /// <summary>The largest fraction of any ceiling used before this reservation.</summary>
    [Id(5)] public double UsedBefore { get; init; }

    /// <summary>When refused: whether only daily ceilings stood in the way (so the call fits once the day is over).</summary>
    [Id(6)] public bool DailyOnly { get; init; }

    /// <summary>
    /// When refused only because of other calls' reservations (what is spent leaves room for this call): when to ask
    /// again, soon, since they settle for what they use.
    /// </summary>
    [Id(7)] public DateTimeOffset? RoomAt { get; init; }
}

/// <summary>An account's budget: ceilings, spent, reserved and remaining per window.</summary>
[GenerateSerializer, Immutable, Alias("spine.BudgetView")]
public sealed record BudgetView
{
    /// <summary>The account.</summary>
    [Id(0)] public required string AccountId { get; init; }

    /// <summary>The ceilings.</summary>
    [Id(1)] public BudgetCeilings Ceilings { get; init; } = new();

    /// <summary>The UTC day the daily figures' window began on.</summary>
    [Id(2)] public DateOnly Day { get; init; }

    /// <summary>Tokens settled today.</summary>
    [Id(3)] public long SpentTokensToday { get; init; }

    /// <summary>Cost settled today.</summary>
    [Id(4)] public decimal SpentCostToday { get; init; }

    /// <summary>Tokens settled in total.</summary>
    [Id(5)] public long SpentTokensTotal { get; init; }

    /// <summary>Cost settled in total.</summary>
    [Id(6)] public decimal SpentCostTotal { get; init; }

    /// <summary>Tokens reserved by calls in flight.</summary>
    [Id(7)] public long ReservedTokens { get; init; }

    /// <summary>Cost reserved by calls in flight.</summary>
    [Id(8)] public decimal ReservedCost { get; init; }

    /// <summary>How many reservations are open.</summary>
    [Id(9)] public int Reservations { get; init; }

    /// <summary>Tokens left today (the tighter of the daily and total ceilings); null when neither is set.</summary>
    [Id(10)] public long? RemainingTokens { get; init; }

    /// <summary>Cost left today (the tighter of the daily and total ceilings); null when neither is set.</summary>
    [Id(11)] public decimal? RemainingCost { get; init; }

    /// <summary>Who last set the ceilings.</summary>
    [Id(12)] public SpineActor? SetBy { get; init; }

    /// <summary>When the window the daily figures are for began (UTC).</summary>
    [Id(13)] public DateTimeOffset WindowStart { get; init; }

    /// <summary>When it ends, and the daily figures start again from zero.</summary>
    [Id(14)] public DateTimeOffset WindowEnds { get; init; }
}

/// <summary>
/// One account's budget, shared by every silo: reservations of the worst case before a call, settlements of what
/// it really used after, by (run, step), so that retries and re-executions never reserve twice. A reservation whose
/// run never settles it expires. Keyed by account id.
/// </summary>
[Alias("spine.IBudgetGrain")]
public interface IBudgetGrain : IGrainWithStringKey
{
    /// <summary>The budget now.</summary>
    /// <exception cref="Spine.Errors.UnknownAccountException">No budget was ever set or spent for the account.</exception>
    [Alias("GetAsync")]
    Task<BudgetView> GetAsync();

    /// <summary>Sets the ceilings.</summary>
    /// <exception cref="Spine.Errors.InvalidPayloadException">A ceiling is negative.</exception>
    [Alias("SetAsync")]
    Task<BudgetView> SetAsync(BudgetCeilings ceilings, SpineActor? actor);

    /// <summary>
    /// Reserves a call's worst case when it fits under every ceiling with what is spent and reserved. A reservation
    /// of a (run, step) that holds one already is answered as the first was, reserves nothing more, and starts the
    /// reservation's lifetime again.
    /// </summary>
    [Alias("ReserveAsync")]
    Task<BudgetVerdict> ReserveAsync(BudgetReservation reservation);

    /// <summary>
    /// Replaces a call's reservation by what it used. Only a held (or expired) reservation is settled: settling a
    /// (run, step) again, or one that was never reserved, changes nothing, so a run may send its journaled
    /// settlements again after a crash.
    /// </summary>
    [Alias("SettleAsync")]
    Task<BudgetView> SettleAsync(string runId, int step, long tokens, decimal cost);

    /// <summary>Settles several calls in one write (see <see cref="SettleAsync"/>); what a resuming run sends.</summary>
    [Alias("SettleAllAsync")]
    Task<BudgetView> SettleAllAsync(IReadOnlyList<BudgetSettlement> settlements);

    /// <summary>Drops a call's reservation without spending (it never ran).</summary>
    [Alias("ReleaseAsync")]
    Task<BudgetView> ReleaseAsync(string runId, int step);

    /// <summary>
    /// A run ended: settles its calls (see <see cref="SettleAsync"/>) and releases every other reservation it still
    /// holds, in one write.
    /// </summary>
    [Alias("EndRunAsync")]
    Task<BudgetView> EndRunAsync(string runId, IReadOnlyList<BudgetSettlement> settlements);
}
