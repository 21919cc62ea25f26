using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Spine.Breakers;
using Spine.Budgets;
using Spine.Runs;

namespace Spine.Telemetry;

/// <summary>
/// The <c>Spine</c> meter's gauges. Each value is reported by the silo that holds it, once for the cluster: a
/// breaker's state and an account's remaining budget by the silo where that grain is active, the run index's counts
/// by the silo of <see cref="RunGaugeGrain"/>. An activation publishes its value here and withdraws it when it ends.
/// </summary>
internal static class SpineGauges
{
    private static readonly ConcurrentDictionary<string, (object Owner, BreakerState State)> Breakers = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, (object Owner, long? Tokens, decimal? Cost)> Budgets = new(StringComparer.Ordinal);
    private static IndexSnapshot? _index;

    static SpineGauges()
    {
        var meter = SpineTelemetry.Meter;
        meter.CreateObservableGauge("spine.breaker.state", ObserveBreakers, "{state}",
            "A tool's circuit breaker: 0 closed, 1 half-open, 2 open.");
        meter.CreateObservableGauge("spine.budget.remaining.tokens", () => ObserveBudgets<long>(b => b.Tokens), "{token}",
            "Tokens an account may still spend in its tightest window (accounts with a token ceiling).");
        meter.CreateObservableGauge("spine.budget.remaining.cost", () => ObserveBudgets<double>(b => b.Cost is { } c ? (double)c : null), "{cost}",
            "Cost an account may still spend in its tightest window (accounts with a cost ceiling).");
        meter.CreateObservableGauge("spine.approvals.waiting", () => ObserveIndex(i => i.Waiting.Select(w => new Measurement<long>(w.Value.Count, Type(w.Key)))), "{run}",
            "Runs waiting for a human approval, by workflow type.");
        meter.CreateObservableGauge("spine.approvals.oldest.age", () => ObserveIndex(i => i.Waiting.Select(w => new Measurement<double>((i.ReadAt - w.Value.Oldest + Stopwatch.GetElapsedTime(i.ReadTimestamp)).TotalSeconds, Type(w.Key)))), "s",
            "How long the longest-waiting approval of a workflow type has waited.");
        meter.CreateObservableGauge("spine.dlq.size", () => ObserveIndex(i => i.DeadLettered.Select(d => new Measurement<long>(d.Value, Type(d.Key)))), "{run}",
            "Runs in the dead-letter queue, by workflow type.");
    }

    /// <summary>A breaker grain's state, as <paramref name="owner"/> (its activation) sees it.</summary>
    public static void Breaker(object owner, string tool, BreakerState state) => Breakers[tool] = (owner, state);

    /// <summary>An account's remaining tokens and cost (null: no ceiling of that kind), as <paramref name="owner"/> sees them.</summary>
    public static void Budget(object owner, BudgetView view)
    {
        ArgumentNullException.ThrowIfNull(view);
        Budgets[view.AccountId] = (owner, view.RemainingTokens, view.RemainingCost);
    }

    /// <summary>Withdraws what <paramref name="owner"/> published under <paramref name="key"/> (a later activation's value stays).</summary>
    public static void Withdraw(object owner, string key)
    {
        if (Breakers.TryGetValue(key, out var breaker) && ReferenceEquals(breaker.Owner, owner))
        {
            Breakers.TryRemove(new KeyValuePair<string, (object, BreakerState)>(key, breaker));
        }

        if (Budgets.TryGetValue(key, out var budget) && ReferenceEquals(budget.Owner, owner))
        {
            Budgets.TryRemove(new KeyValuePair<string, (object, long?, decimal?)>(key, budget));
        }
    }

    /// <summary>The run index's counts as just read; reported while younger than <see cref="IndexSnapshot.ValidFor"/>.</summary>
    public static void Index(IndexSnapshot snapshot) => _index = snapshot;

    /// <summary>Withdraws the run index's counts when <paramref name="owner"/> published them.</summary>
    public static void WithdrawIndex(object owner)
    {
        if (_index is { } index && ReferenceEquals(index.Owner, owner))
        {
            Interlocked.CompareExchange(ref _index, null, index);
        }
    }

    private static IEnumerable<Measurement<int>> ObserveBreakers() =>
        Breakers.Select(b => new Measurement<int>(b.Value.State switch { BreakerState.Open => 2, BreakerState.HalfOpen => 1, _ => 0 },
            new KeyValuePair<string, object?>("spine.tool.name", b.Key)));

    private static IEnumerable<Measurement<T>> ObserveBudgets<T>(Func<(object Owner, long? Tokens, decimal? Cost), T?> value)
        where T : struct =>
        Budgets.Where(b => value(b.Value).HasValue)
            .Select(b => new Measurement<T>(value(b.Value)!.Value, new KeyValuePair<string, object?>("spine.account", b.Key)));

    private static IEnumerable<Measurement<T>> ObserveIndex<T>(Func<IndexSnapshot, IEnumerable<Measurement<T>>> measure)
        where T : struct =>
        _index is { } index && Stopwatch.GetElapsedTime(index.ReadTimestamp) < index.ValidFor ? measure(index) : [];

    private static KeyValuePair<string, object?> Type(string workflowType) => new("spine.workflow.type", workflowType);
}

/// <summary>What <see cref="RunGaugeGrain"/> read from the run index.</summary>
/// <param name="Owner">The activation that read it.</param>
/// <param name="ReadAt">When, by the database's clock (the ages are measured against it).</param>
/// <param name="ReadTimestamp">When, by this process's stopwatch.</param>
/// <param name="ValidFor">How long it is reported: past it, its silo has stopped refreshing (or died).</param>
/// <param name="Waiting">Per workflow type: runs awaiting approval, and since when the oldest has waited.</param>
/// <param name="DeadLettered">Per workflow type: runs in the dead-letter queue.</param>
internal sealed record IndexSnapshot(
    object Owner,
    DateTimeOffset ReadAt,
    long ReadTimestamp,
    TimeSpan ValidFor,
    IReadOnlyDictionary<string, (long Count, DateTimeOffset Oldest)> Waiting,
    IReadOnlyDictionary<string, long> DeadLettered);
