using Spine.Budgets;
using Spine.Errors;
using Spine.Identity;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Budgets;

/// <summary>An account's budget grain on a real two-silo cluster with its state in PostgreSQL.</summary>
[Collection(ClusterCollection.Name)]
public sealed class BudgetGrainTests(ClusterFixture fixture)
{
    private static string NewAccount() => "acct-" + Guid.NewGuid().ToString("N");

    private IBudgetGrain Budget(string account) => fixture.Cluster.Client.GetGrain<IBudgetGrain>(account);

    [Fact]
    public async Task TwoHundredReservationsAtOnce_UnderACeilingForFifty_GrantExactlyFifty_AndNothingIsOverspent()
    {
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { DailyTokens = 500 }, new SpineActor("ops", ["operator"]));

        var verdicts = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => Budget(account).ReserveAsync(new BudgetReservation($"r-{i}", 1, 10, 0.01m))));
        var reserved = await fixture.Client.GetBudgetAsync(account);
        await Task.WhenAll(Enumerable.Range(0, 200).Where(i => verdicts[i].Granted).Select(i => Budget(account).SettleAsync($"r-{i}", 1, 8, 0.008m)));
        var settled = await fixture.Client.GetBudgetAsync(account);

        Assert.Equal(50, verdicts.Count(v => v.Granted));
        Assert.All(verdicts.Where(v => !v.Granted), v => Assert.Contains("daily token ceiling (500)", v.Reason, StringComparison.Ordinal));
        Assert.Equal((500L, 50), (reserved.ReservedTokens, reserved.Reservations));
        Assert.Equal(0L, reserved.RemainingTokens);
        Assert.Equal((400L, 0L, 0), (settled.SpentTokensToday, settled.ReservedTokens, settled.Reservations));
        Assert.Equal(100L, settled.RemainingTokens);
        Assert.Equal("ops", settled.SetBy!.Id);
    }

    [Fact]
    public async Task AReservationAskedTwice_ReservesOnce_AndASettlementSentTwice_CountsOnce()
    {
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { TotalTokens = 100 });

        var first = await Budget(account).ReserveAsync(new BudgetReservation("r-1", 3, 60, 0));
        var again = await Budget(account).ReserveAsync(new BudgetReservation("r-1", 3, 60, 0));
        var other = await Budget(account).ReserveAsync(new BudgetReservation("r-1", 4, 60, 0));
        await Budget(account).SettleAsync("r-1", 3, 30, 0);
        var settledTwice = await Budget(account).SettleAsync("r-1", 3, 30, 0);
        var afterSettle = await Budget(account).ReserveAsync(new BudgetReservation("r-1", 3, 60, 0));

        Assert.True(first.Granted);
        Assert.True(again.Granted);
        Assert.False(other.Granted);
        Assert.Equal((30L, 0), (settledTwice.SpentTokensTotal, settledTwice.Reservations));
        Assert.True(afterSettle.Granted);

        // Settled is gone: the same key reserves afresh (a run never asks again for a call whose settlement is durable).
        Assert.Equal(1, (await fixture.Client.GetBudgetAsync(account)).Reservations);
    }

    [Fact]
    public async Task ASettlementCarriedByTheRunsNextReservation_CountsBeforeItIsWeighed_AndOnceWhicheverArrivesFirst()
    {
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { TotalTokens = 100 });
        await Budget(account).ReserveAsync(new BudgetReservation("r-1", 1, 60, 0));

        // The second call does not fit beside the first's worst case, but does beside what the first used.
        var next = await Budget(account).ReserveAsync(new BudgetReservation("r-1", 2, 60, 0) { Settlements = [new BudgetSettlement("r-1", 1, 30, 0)] });
        var late = await Budget(account).SettleAsync("r-1", 1, 30, 0);
        var foreign = await Assert.ThrowsAsync<InvalidPayloadException>(() =>
            Budget(account).ReserveAsync(new BudgetReservation("r-1", 3, 1, 0) { Settlements = [new BudgetSettlement("r-2", 1, 5, 0)] }));

        Assert.True(next.Granted, next.Reason);
        Assert.Equal((30L, 60L, 1), (late.SpentTokensTotal, late.ReservedTokens, late.Reservations));
        Assert.Contains("must be of its run r-1", foreign.Message, StringComparison.Ordinal);
        Assert.Equal((30L, 1), ((await fixture.Client.GetBudgetAsync(account)).SpentTokensTotal, (await fixture.Client.GetBudgetAsync(account)).Reservations));
    }

    [Fact]
    public async Task AReservationAskedAgainForMore_IsWeighedAgain_AndForLess_KeepsItsHold()
    {
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { TotalTokens = 100 });
        await Budget(account).ReserveAsync(new BudgetReservation("r-1", 1, 50, 0));
        await Budget(account).ReserveAsync(new BudgetReservation("r-2", 1, 30, 0));

        // A resumed run decided its call anew, dearer: held as asked only when that fits beside the others.
        var less = await Budget(account).ReserveAsync(new BudgetReservation("r-1", 1, 40, 0));
        var fits = await Budget(account).ReserveAsync(new BudgetReservation("r-1", 1, 70, 0));
        var tooMuch = await Budget(account).ReserveAsync(new BudgetReservation("r-2", 1, 31, 0));
        var view = await fixture.Client.GetBudgetAsync(account);

        Assert.True(less.Granted);
        Assert.True(fits.Granted, fits.Reason);
        Assert.False(tooMuch.Granted);
        Assert.Equal((70L, 1), (view.ReservedTokens, view.Reservations));
    }

    [Fact]
    public async Task ALateSettlement_OfAnExpiredReservation_StillCounts_AndOneNeverReserved_ChangesNothing()
    {
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { TotalTokens = 100 });
        Assert.True((await Budget(account).ReserveAsync(new BudgetReservation("r-late", 1, 80, 0))).Granted);
        await Eventually.GetAsync(() => fixture.Client.GetBudgetAsync(account), b => b.Reservations == 0, TimeSpan.FromSeconds(30), "the reservation to expire");

        var late = await Budget(account).SettleAsync("r-late", 1, 70, 0);
        var never = await Budget(account).SettleAllAsync([new BudgetSettlement("r-never", 1, 50, 0), new BudgetSettlement("r-late", 1, 70, 0)]);

        Assert.Equal(70L, late.SpentTokensTotal);
        Assert.Equal(70L, never.SpentTokensTotal);
        Assert.Equal(30L, never.RemainingTokens);
    }

    [Fact]
    public async Task AReservationNobodySettles_Expires()
    {
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { DailyTokens = 10 });
        Assert.True((await Budget(account).ReserveAsync(new BudgetReservation("r-gone", 1, 10, 0))).Granted);
        Assert.False((await Budget(account).ReserveAsync(new BudgetReservation("r-next", 1, 10, 0))).Granted);

        var freed = await Eventually.GetAsync(() => fixture.Client.GetBudgetAsync(account), b => b.Reservations == 0, TimeSpan.FromSeconds(30), "the reservation to expire");

        Assert.Equal(10L, freed.RemainingTokens);
        Assert.True((await Budget(account).ReserveAsync(new BudgetReservation("r-next", 1, 10, 0))).Granted);
    }

    [Fact]
    public async Task TheBudget_SurvivesItsGrainsDeactivation()
    {
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { DailyCost = 2.5m });
        await Budget(account).ReserveAsync(new BudgetReservation("r-1", 1, 100, 1.25m));

        await fixture.Cluster.DeactivateAsync(Budget(account));
        var reloaded = await fixture.Client.GetBudgetAsync(account);

        Assert.Equal(2.5m, reloaded.Ceilings.DailyCost);
        Assert.Equal(1.25m, reloaded.ReservedCost);
        Assert.Equal(1.25m, reloaded.RemainingCost);
    }

    [Fact]
    public async Task BadInput_GetsATypedError_AndChangesNothing()
    {
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { DailyTokens = 5 });

        var unknown = await Assert.ThrowsAsync<UnknownAccountException>(() => fixture.Client.GetBudgetAsync(NewAccount()));
        var negative = await Assert.ThrowsAsync<InvalidPayloadException>(() => fixture.Client.SetBudgetAsync(account, new BudgetCeilings { DailyTokens = -1 }));
        var badReservation = await Assert.ThrowsAsync<InvalidPayloadException>(() => Budget(account).ReserveAsync(new BudgetReservation("r", 1, -5, 0)));
        await Assert.ThrowsAsync<InvalidIdentifierException>(() => fixture.Client.GetBudgetAsync(" "));

        Assert.Equal("unknown_account", unknown.Kind);
        Assert.Contains("may not be negative", negative.Message, StringComparison.Ordinal);
        Assert.NotNull(badReservation);
        var view = await fixture.Client.GetBudgetAsync(account);
        Assert.Equal(5L, view.Ceilings.DailyTokens);
        Assert.Equal(0, view.Reservations);
    }
}
