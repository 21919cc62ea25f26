using System.Text.Json;
using Spine.Runs;
using Spine.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Spine.Tests.Recovery;

[Collection(ClusterCollection.Name)]
public sealed class RetryTests(ClusterFixture fixture, ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private Task<RunInfo> StartToolAsync(object arguments, bool escalate = false) =>
        fixture.Client.StartAsync("test.tool", new { tool = "test_effect", arguments, escalate });

    [Fact]
    public async Task ToolFailsTwiceThenSucceeds_RetriedWithBackoffAndEveryAttemptJournaled()
    {
        var run = await StartToolAsync(new { action = "pay", failTimes = 2 });

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        var calls = EffectTool.CallsOf(run.RunId);
        Assert.Equal([1, 2, 3], calls.Select(c => c.Attempt));
        Assert.Single(calls.Select(c => c.Key).Distinct());
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        var attempts = journal.Where(r => r.Step == 1).ToList();
        Assert.Equal(["AttemptFailed", "AttemptFailed", "Tool"], attempts.Select(r => r.Kind));
        Assert.Equal([1, 2, 3], attempts.Select(r => r.Attempt ?? 0));
        Assert.All(attempts.Take(2), r => Assert.Equal("transient", JsonDocument.Parse(r.PayloadJson!).RootElement.GetProperty("class").GetString()));

        // Policy: 200 ms, then 400 ms, no jitter. The next attempt may not start before its due time.
        var gap1 = attempts[1].RecordedAt - attempts[0].RecordedAt;
        var gap2 = attempts[2].RecordedAt - attempts[1].RecordedAt;
        Assert.InRange(gap1.TotalMilliseconds, 195, 2000);
        Assert.InRange(gap2.TotalMilliseconds, 395, 2500);
    }

    [Fact]
    public async Task HttpServiceUnavailable_IsTransientAndRetried()
    {
        var run = await StartToolAsync(new { action = "fetch", fail = "http503" });

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal(2, EffectTool.CallsOf(run.RunId).Count);
    }

    [Fact]
    public async Task TerminalFailure_NotRetried_RunFailsNotDeadLettered()
    {
        var run = await StartToolAsync(new { action = "pay", fail = "http404" });

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Single(EffectTool.CallsOf(run.RunId));
        Assert.Equal(1, done.Error!.Step);
        var outcome = (await fixture.Client.GetJournalAsync(run.RunId)).Single(r => r.Kind == "Tool");
        Assert.Equal("terminal", JsonDocument.Parse(outcome.PayloadJson!).RootElement.GetProperty("class").GetString());
    }

    [Fact]
    public async Task TransientFailuresExhaustAttempts_RunIsDeadLetteredWithFailingStep()
    {
        var run = await StartToolAsync(new { action = "pay", fail = "transient-always" });

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.DeadLettered, done.Status);
        Assert.Equal(4, EffectTool.CallsOf(run.RunId).Count);
        Assert.Equal(1, done.Error!.Step);
        Assert.Equal("test_effect", done.Error.StepName);
        Assert.Contains("retries exhausted after 4 attempts", done.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SeededFlakyTool_ManyRuns_AllCompleteAndEachEffectOnce()
    {
        var seed = Random.Shared.Next();
        output.WriteLine($"seed {seed}");
        var runs = new List<RunInfo>();
        for (var i = 0; i < 20; i++)
        {
            runs.Add(await fixture.Client.StartAsync("chaos", new { steps = 5, failureRate = 0.3, seed }));
        }

        var done = new List<RunInfo>();
        foreach (var run in runs)
        {
            done.Add(await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(60)));
        }

        Assert.All(done, r => Assert.True(r.Status == RunStatus.Completed, $"run {r.RunId} ended {r.Status} (seed {seed})"));
        var ids = runs.Select(r => r.RunId).ToArray();
        Assert.Equal(100L, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)));
        var retried = await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_journal WHERE run_id = ANY(@ids) AND kind = 7", ("ids", ids));
        Assert.True(retried > 5, $"only {retried} attempts failed at a 30% failure rate (seed {seed})");
        var redelivered = await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids) AND deliveries > 1", ("ids", ids));
        Assert.True(redelivered > 0, $"no effect was redelivered after a lost response; the dedup path was not exercised (seed {seed})");
    }
}
