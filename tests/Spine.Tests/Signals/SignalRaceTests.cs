using Npgsql;
using Spine.Errors;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Signals;

/// <summary>Signals under races and failures: retries, replays, a run ending, a status write refused, a wrong payload.</summary>
[Collection(ClusterCollection.Name)]
public sealed class SignalRaceTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    // A sender's retry (same signal id) after a lost answer is refused once the signal finished the run.
    [Fact]
    public async Task RetryOfTheSignalThatFinishedTheRun_IsIdempotent()
    {
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("go"));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait");
        await fixture.Client.SignalAsync(run.RunId, "go", "once", signalId: "sig-1");
        await fixture.Client.WaitAsync(run.RunId, Patience);

        // The first send was journaled and delivered; its retry must not be reported as refused.
        var retry = await Record.ExceptionAsync(() => fixture.Client.SignalAsync(run.RunId, "go", "once", signalId: "sig-1"));
        Assert.Null(retry);
    }

    // A replay copies Signal outcome rows (ids of the source's signals) but no SignalReceived rows; the new run's
    // inbox counts those ids as received, so a signal with such an id is journaled, acknowledged and never delivered.
    [Fact]
    public async Task AReplay_DeliversASignalWhoseIdTheSourceRunReceived()
    {
        var source = await fixture.Client.StartAsync("test.signals", new SignalInput("pay", Count: 2, TimeoutMilliseconds: 3000));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(source.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the source to wait");
        await fixture.Client.SignalAsync(source.RunId, "pay", "first", signalId: "inv-1");
        Assert.Equal(["first", "timeout"], await fixture.Client.GetResultAsync<string[]>(source.RunId));

        var replay = await fixture.Client.ReplayAsync(new ReplayRequest(source.RunId, FromStep: 2));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(replay.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the replay to wait");
        await fixture.Client.SignalAsync(replay.RunId, "pay", "second", signalId: "inv-1");
        var result = await fixture.Client.GetResultAsync<string[]>(replay.RunId);

        var journal = await fixture.Client.GetJournalAsync(replay.RunId);
        Assert.Single(journal, r => r.Kind == "SignalReceived");
        Assert.Equal(["first", "second"], result);
    }

    // A signal whose state check passes while the run's closing row commits is appended after it: the trigger
    // refuses it (SPJ01) and the sender gets JournalTamperedException instead of InvalidRunStateException.
    [Fact]
    public async Task ASignalRacingTheRunsEnd_IsRefusedAsInvalidRunState()
    {
        var unexpected = new List<Exception>();
        for (var attempt = 0; attempt < 10 && unexpected.Count == 0; attempt++)
        {
            var run = await fixture.Client.StartAsync("test.signals", new SignalInput("go"));
            await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait");
            var senders = Enumerable.Range(0, 8).Select(async _ =>
            {
                for (var i = 0; i < 400; i++)
                {
                    try
                    {
                        await fixture.Client.SignalAsync(run.RunId, "noise", "x");
                    }
                    catch (InvalidRunStateException)
                    {
                        return;
                    }
                    catch (Exception e)
                    {
                        lock (unexpected)
                        {
                            unexpected.Add(e);
                        }

                        return;
                    }
                }
            }).ToList();
            await fixture.Client.SignalAsync(run.RunId, "go", "now");
            await Task.WhenAll(senders);
        }

        Assert.Empty(unexpected.Select(e => e.GetType().Name + ": " + e.Message));
    }

    // A run must never show as waiting (where the recovery sweep does not look) while a journaled signal for its wait is
    // undelivered. The status write that follows the signal is refused once: index-only updates from AwaitingSignal to
    // Running (transactions that insert no journal row of the run), as a silo dying right after the signal's commit
    // would leave it. Nothing calls the run afterwards: only the sweep may resume it.
    [Fact]
    public async Task AJournaledSignal_IsDeliveredEvenIfTheStatusWriteAfterItIsLost()
    {
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("go"));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait");
        var trigger = "test_refuse_" + Guid.NewGuid().ToString("N")[..8];
        await ExecuteAsync($"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = '42501'; END $$;
            CREATE TRIGGER {trigger} BEFORE UPDATE ON spine_runs FOR EACH ROW
            WHEN (NEW.run_id = '{run.RunId}' AND OLD.status = 11 AND NEW.status = 1) EXECUTE FUNCTION {trigger}();
            CREATE FUNCTION {trigger}_rows() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                -- Only an update whose transaction appended no row of the run is refused.
                IF EXISTS (SELECT 1 FROM spine_journal j WHERE j.run_id = NEW.run_id AND j.xmin::text::bigint = txid_current() % 4294967296) THEN
                    RETURN NEW;
                END IF;
                RAISE EXCEPTION 'refused for the test' USING ERRCODE = '42501';
            END $$;
            DROP TRIGGER {trigger} ON spine_runs;
            CREATE TRIGGER {trigger} BEFORE UPDATE ON spine_runs FOR EACH ROW
            WHEN (NEW.run_id = '{run.RunId}' AND OLD.status = 11 AND NEW.status = 1) EXECUTE FUNCTION {trigger}_rows();
            """);
        try
        {
            await fixture.Client.SignalAsync(run.RunId, "go", "now");
            await Task.Delay(2000);
        }
        finally
        {
            await ExecuteAsync($"DROP TRIGGER {trigger} ON spine_runs; DROP FUNCTION {trigger}(); DROP FUNCTION {trigger}_rows();");
        }

        var partition = await fixture.Postgres.ScalarAsync<short>("SELECT sweep_partition FROM spine_runs WHERE run_id = @id", ("id", run.RunId));
        await fixture.Cluster.Client.GetGrain<IRunRecoveryGrain>(partition).SweepAsync();
        var status = await Eventually.GetAsync(
            () => fixture.Postgres.ScalarAsync<short>("SELECT status FROM spine_runs WHERE run_id = @id", ("id", run.RunId)),
            s => s == (short)RunStatus.Completed, TimeSpan.FromSeconds(15), "the run to complete");
        Assert.Equal((short)RunStatus.Completed, status);
    }

    // A payload that does not read as the wait's type is a sender's error, reported as the workflow's non-determinism.
    [Fact]
    public async Task ASignalOfTheWrongShape_IsNotReportedAsNonDeterminism()
    {
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("go"));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait");
        await fixture.Client.SignalAsync(run.RunId, new SignalRequest("go", "{\"amount\":5}"));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("invalid_payload", done.Error?.Kind);
    }

    // A second send of one signal id while the first is being journaled returns at once, before the signal is
    // durable; when the first write fails, the retry's sender was told it was sent, and the signal is lost.
    [Fact]
    public async Task ARetryWhileTheFirstSendIsInFlight_DoesNotSucceedUnlessTheSignalIsDurable()
    {
        var run = await fixture.Client.StartAsync("test.signals", new SignalInput("go", TimeoutMilliseconds: 60_000));
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == RunStatus.AwaitingSignal, Patience, "the run to wait");
        var trigger = "test_refuse_" + Guid.NewGuid().ToString("N")[..8];
        await ExecuteAsync($"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(1); RAISE EXCEPTION 'refused for the test' USING ERRCODE = '42501'; END $$;
            CREATE TRIGGER {trigger} BEFORE INSERT ON spine_journal FOR EACH ROW
            WHEN (NEW.run_id = '{run.RunId}' AND NEW.kind = 25) EXECUTE FUNCTION {trigger}();
            """);
        Exception? first, retry;
        try
        {
            var sending = fixture.Client.SignalAsync(run.RunId, "go", "once", signalId: "sig-9");
            await Task.Delay(300);
            retry = await Record.ExceptionAsync(() => fixture.Client.SignalAsync(run.RunId, "go", "once", signalId: "sig-9"));
            first = await Record.ExceptionAsync(() => sending);
        }
        finally
        {
            await ExecuteAsync($"DROP TRIGGER {trigger} ON spine_journal; DROP FUNCTION {trigger}();");
        }

        var received = await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_journal WHERE run_id = @id AND kind = 25", ("id", run.RunId));
        Assert.NotNull(first);
        Assert.True(retry is not null || received == 1, $"the retry succeeded, the first send failed ({first?.GetType().Name}), and {received} signals are journaled");
        await fixture.Client.CancelAsync(run.RunId);
    }

    private async Task ExecuteAsync(string sql)
    {
        await using var data = NpgsqlDataSource.Create(fixture.Postgres.OwnerConnectionString);
        await using var command = data.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }
}
