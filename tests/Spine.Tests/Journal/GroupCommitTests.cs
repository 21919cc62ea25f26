using Microsoft.Extensions.Logging.Abstractions;
using Spine.Errors;
using Spine.Hosting;
using Spine.Journal;
using Spine.Runs;
using Spine.Storage;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Journal;

/// <summary>One write that PostgreSQL or the driver refuses fails alone; it never fails the writes it was batched with.</summary>
[Collection(ClusterCollection.Name)]
public sealed class GroupCommitTests(ClusterFixture fixture)
{
    // A lone surrogate cannot be encoded as UTF-8: the driver refuses the whole statement it is in.
    private const string Unencodable = "poison-\uD800";

    [Fact]
    public async Task Batch_WithOneWriteTheDriverRefuses_CommitsTheOther99()
    {
        var options = Microsoft.Extensions.Options.Options.Create(new SpineOptions { ConnectionString = fixture.Postgres.RuntimeConnectionString, JournalWriters = 1 });
        await using var database = new SpineDatabase(options);
        await using var writer = new JournalWriter(database, options, NullLogger<JournalWriter>.Instance);
        var prefix = "r-gc-" + Guid.NewGuid().ToString("N")[..8];

        var writes = Enumerable.Range(0, 100).Select(i =>
        {
            var runId = $"{prefix}-{i}";
            var row = new JournalRow(runId, 0, JournalKind.RunStarted, null, i == 37 ? Unencodable : "RunStarted", true, "{}",
                JournalHash.ToStoredPrecision(DateTimeOffset.UtcNow), JournalHash.Genesis, new byte[32], KeyId: TestAudit.Ring.Signing.Id);
            return (runId, Task: writer.AppendAsync(row, null));
        }).ToList();
        var outcomes = await Task.WhenAll(writes.Select(async w =>
        {
            try
            {
                await w.Task;
                return null;
            }
            catch (Exception e)
            {
                return e;
            }
        }));

        var refused = Assert.IsType<StorageUnavailableException>(Assert.Single(outcomes, e => e is not null));
        Assert.Same(refused, outcomes[37]);
        Assert.False(refused.IsTransient);
        var stored = await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_journal WHERE run_id LIKE @p", ("p", prefix + "-%"));
        Assert.Equal(99, stored);
    }

    [Fact]
    public async Task HundredRuns_OneOutcomeRefused_TheOther99CompleteWithEachEffectOnce()
    {
        var names = Enumerable.Range(0, 100).Select(i => i == 50 ? "unencodable" : $"effect-{i}").ToList();

        var runs = await Task.WhenAll(names.Select(n => fixture.Client.StartAsync("test.named", n)));
        var poisoned = runs[50].RunId;
        var healthy = runs.Where(r => r.RunId != poisoned).ToList();
        var done = await Task.WhenAll(healthy.Select(r => fixture.Client.WaitAsync(r.RunId, TimeSpan.FromSeconds(60))));

        Assert.All(done, d => Assert.Equal(RunStatus.Completed, d.Status));
        Assert.All(healthy, r => Assert.Equal(1, Effects.Of(r.RunId, "named")));
        Assert.All(healthy, r => Assert.Equal(1, Effects.Of(r.RunId, "second")));
        foreach (var run in healthy)
        {
            Assert.DoesNotContain(await fixture.Client.GetJournalAsync(run.RunId), e => e.Kind == "AttemptFailed");
        }

        // The refused outcome is not the step's failure: no attempt is charged and the step is not retried.
        // Resuming would repeat its effect on every sweep, so the run is dead-lettered, uncompensated.
        var refused = await fixture.Client.WaitAsync(poisoned, TimeSpan.FromSeconds(30));
        Assert.Equal(RunStatus.DeadLettered, refused.Status);
        Assert.Equal("journal_refused", refused.Error!.Kind);
        Assert.DoesNotContain(await fixture.Client.GetJournalAsync(poisoned), e => e.Kind is "AttemptFailed" or "Step");
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.Equal(1, Effects.Of(poisoned, "named"));
        Assert.Equal(0, Effects.Of(poisoned, "second"));
    }
}
