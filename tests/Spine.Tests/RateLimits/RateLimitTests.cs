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
    public async Task FourHundredCalls_FromTwoSilos_UnderALimitOfTwentyASecond_RunAtTheLimit_AndNoneIsLostOrFails()
    {
        var started = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => fixture.Client.StartAsync("test.metered", new MeteredInput(10))));
        var ends = await Task.WhenAll(started.Select(r => fixture.Client.WaitAsync(r.RunId, TimeSpan.FromSeconds(120))));

        Assert.All(ends, end => Assert.Equal(RunStatus.Completed, end.Status));
        var calls = started.SelectMany(r => MeteredTool.Calls[r.RunId]).OrderBy(c => c.At).ToList();
        Assert.Equal(400, calls.Count);
        Assert.Equal(2, calls.Select(c => c.Silo).Distinct().Count());

        var rate = (calls.Count - 1) / (calls[^1].At - calls[0].At).TotalSeconds;
        Assert.InRange(rate, MeteredTool.PerSecond * 0.9, MeteredTool.PerSecond * 1.1);
        var busiestSecond = calls.Select((c, i) => calls.Skip(i).TakeWhile(d => d.At < c.At + TimeSpan.FromSeconds(1)).Count()).Max();
        var start = calls.Select((c, i) => (i, n: calls.Skip(i).TakeWhile(d => d.At < c.At + TimeSpan.FromSeconds(1)).Count())).MaxBy(x => x.n).i;
        Assert.True(busiestSecond <= MeteredTool.PerSecond * 1.1, $"{busiestSecond} calls in the second from {calls[start].At:O}: " + string.Join(", ", calls.Skip(start).Take(busiestSecond + 3).Select(c => $"{(c.At - calls[start].At).TotalMilliseconds:F0}ms@{c.Silo[^5..]}")) + " first " + calls[0].At.ToString("O"));

        // More calls waited than the in-memory wait holds: some waited durably, each wait journaled.
        var durableWaits = await fixture.Postgres.ScalarAsync<long>(
            "SELECT count(*) FROM spine_journal WHERE run_id = ANY(@ids) AND kind = 26", ("ids", started.Select(r => r.RunId).ToArray()));
        Assert.True(durableWaits > 0, "no call waited durably");
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
}
