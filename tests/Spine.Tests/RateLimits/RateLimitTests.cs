using Spine.RateLimits;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.RateLimits;

/// <summary>
/// A tool behind a cluster-wide limit of 20 calls a second, called from runs on both silos of the test cluster
/// (real PostgreSQL, real reminders for the calls that wait durably).
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class RateLimitTests(ClusterFixture fixture)
{
    [Fact]
    public async Task FourHundredCalls_FromTwoSilos_UnderALimitOfTwentyASecond_NeverRunFasterThanTheLimit_AndNoneIsLostOrFails()
    {
        var started = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => fixture.Client.StartAsync("test.metered", new MeteredInput(10))));
        var ends = await Task.WhenAll(started.Select(r => fixture.Client.WaitAsync(r.RunId, TimeSpan.FromSeconds(120))));

        Assert.All(ends, end => Assert.Equal(RunStatus.Completed, end.Status));
        var calls = started.SelectMany(r => MeteredTool.Calls[r.RunId]).OrderBy(c => c.At).ToList();
        Assert.Equal(400, calls.Count);
        Assert.Equal(2, calls.Select(c => c.Silo).Distinct().Count());

        // Never faster than the limit; slower only by what a loaded machine adds to the waits (a call that waited
        // durably wakes on its reminder), not by whole slots left unused: the lower bound is loose on purpose.
        var rate = (calls.Count - 1) / (calls[^1].At - calls[0].At).TotalSeconds;
        Assert.InRange(rate, MeteredTool.PerSecond * 0.5, MeteredTool.PerSecond * 1.1);
        var busiestSecond = calls.Select((c, i) => calls.Skip(i).TakeWhile(d => d.At < c.At + TimeSpan.FromSeconds(1)).Count()).Max();
        var start = calls.Select((c, i) => (i, n: calls.Skip(i).TakeWhile(d => d.At < c.At + TimeSpan.FromSeconds(1)).Count())).MaxBy(x => x.n).i;
        Assert.True(busiestSecond <= MeteredTool.PerSecond * 1.1, $"{busiestSecond} calls in the second from {calls[start].At:O}: " + string.Join(", ", calls.Skip(start).Take(busiestSecond + 3).Select(c => $"{(c.At - calls[start].At).TotalMilliseconds:F0}ms@{c.Silo[^5..]}")) + " first " + calls[0].At.ToString("O"));

        // More calls waited than the in-memory wait holds: some waited durably, each wait journaled.
        var durableWaits = await fixture.Postgres.ScalarAsync<long>(
            "SELECT count(*) FROM spine_journal WHERE run_id = ANY(@ids) AND kind = 26", ("ids", started.Select(r => r.RunId).ToArray()));
        Assert.True(durableWaits > 0, "no call waited durably");

        var limit = (await fixture.Client.GetRateLimitsAsync()).Single(l => l.Subject == MeteredTool.Name);
        Assert.Equal(("tool:test_metered/requests", "requests", 20.0, 1.0), (limit.Name, limit.Unit, limit.PerSecond, limit.Capacity));
        Assert.True(limit.Granted >= 400, $"the limit granted {limit.Granted} permits for 400 calls");
    }

    [Fact]
    public async Task ATooManyRequestsAnswer_HoldsTheLimitBackForItsRetryAfter_AndTheCallSucceedsOnItsRetry()
    {
        var started = await fixture.Client.StartAsync("test.metered", new MeteredInput(3, RefuseFirst: true));
        var end = await fixture.Client.WaitAsync(started.RunId, TimeSpan.FromSeconds(60));

        Assert.Equal(RunStatus.Completed, end.Status);
        var calls = MeteredTool.Calls[started.RunId].ToList();
        Assert.Equal(4, calls.Count);
        Assert.True(calls[1].At - calls[0].At >= TimeSpan.FromSeconds(1.9), $"retried {calls[1].At - calls[0].At} after a Retry-After of 2 s");
        var journal = await fixture.Client.GetJournalAsync(started.RunId);
        Assert.Contains(journal, r => r.Kind == "AttemptFailed" && r.PayloadJson!.Contains("rate_limited", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ALimitsGrain_GrantsABurstAtOnce_ThenAtTheRate_AndARefusalSaysWhenEachAmountIsFree()
    {
        // One permit a second, so that the calls below land well within each slot.
        var grain = fixture.Cluster.Client.GetGrain<IRateLimiterGrain>($"test-burst-{Guid.NewGuid():N}");
        var spec = new RateSpec(1, 3);
        var grant = await grain.LeaseAsync(spec, [1, 1, 1, 1, 1], TimeSpan.Zero, DateTimeOffset.UtcNow + TimeSpan.FromSeconds(10));
        var start = new DateTimeOffset(grant.At[0], TimeSpan.Zero);
        Assert.Equal([0, 0, 0, 1, 2], grant.At.Select(t => (new DateTimeOffset(t, TimeSpan.Zero) - start).TotalSeconds));

        // 50 tokens wait for a full bucket (5 s on) and overdraw it by 50 s; 20 and 2 more are free only after that, each
        // from its own time, not from when one would be.
        grant = await grain.LeaseAsync(spec, [50, 20, 2], TimeSpan.Zero, start + TimeSpan.FromSeconds(10));
        Assert.Equal([(start + TimeSpan.FromSeconds(5)).UtcTicks], grant.At);
        Assert.Equal(start + TimeSpan.FromSeconds(55), grant.NextFree);
        Assert.Equal([(start + TimeSpan.FromSeconds(55)).UtcTicks, (start + TimeSpan.FromSeconds(54)).UtcTicks], grant.Refused!);

        await grain.PenalizeAsync(start + TimeSpan.FromSeconds(90));
        grant = await grain.LeaseAsync(spec, [1], TimeSpan.FromMilliseconds(10), DateTimeOffset.UtcNow + TimeSpan.FromSeconds(1));
        Assert.Empty(grant.At);
        Assert.Equal(start + TimeSpan.FromSeconds(90), grant.BlockedUntil);
        Assert.Equal(start + TimeSpan.FromSeconds(90), grant.NextFree);
    }

    [Fact]
    public async Task ModelCalls_FromBothSilos_UnderATokensPerMinuteLimit_SpendTokensAtTheLimit()
    {
        var started = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => fixture.Client.StartAsync(
            "test.budget", new Budgets.BudgetInput(8, MeteredChatClient.Key, MeteredChatClient.MaxOutputTokens))));
        var ends = await Task.WhenAll(started.Select(r => fixture.Client.WaitAsync(r.RunId, TimeSpan.FromSeconds(120))));

        Assert.All(ends, end => Assert.Equal(RunStatus.Completed, end.Status));
        var calls = started.SelectMany(r => MeteredChatClient.Calls[r.RunId]).Order().ToList();
        Assert.Equal(64, calls.Count);

        // A call weighs its maximum output and its input as counted (a few tokens): 600,000 tokens a minute is
        // between 9.7 and 10 calls a second. Never more; less when the machine is starved (a permit woken late is
        // dropped, not used late), so the lower bound is looser than the upper one.
        var perSecond = (calls.Count - 1) / (calls[^1] - calls[0]).TotalSeconds;
        var limit = (await fixture.Client.GetRateLimitsAsync()).Single(l => l.Subject == MeteredChatClient.Key);
        var rows = await fixture.Postgres.ScalarAsync<string>(
            "SELECT coalesce(string_agg(kind::text || ':' || n, ', '), '') FROM (SELECT kind, count(*) AS n FROM spine_journal WHERE run_id = ANY(@ids) GROUP BY kind) k",
            ("ids", started.Select(r => r.RunId).ToArray()));
        Assert.True(perSecond is >= 9.7 * 0.7 and <= 10 * 1.1, $"{perSecond:F2} calls/s; the limit granted {limit.Granted} tokens; journal rows by kind: {rows}");

        Assert.Equal(("chat:tpm-metered/tokens", "tokens", 10_000.0, 2000.0), (limit.Name, limit.Unit, limit.PerSecond, limit.Capacity));
        Assert.True(limit.Granted >= 64 * MeteredChatClient.MaxOutputTokens, $"the limit granted {limit.Granted} tokens for 64 calls");
    }
}
