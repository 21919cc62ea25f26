using Microsoft.Extensions.Logging.Abstractions;
using Spine.Hosting;
using Spine.Journal;
using Spine.Runs;
using Spine.Storage;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Journal;

/// <summary>The run index never goes backwards: a finished status is final, and an older write is ignored.</summary>
[Collection(ClusterCollection.Name)]
public sealed class RunIndexTests(ClusterFixture fixture) : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private SpineDatabase _database = null!;
    private JournalWriter _writer = null!;

    public Task InitializeAsync()
    {
        var options = Microsoft.Extensions.Options.Options.Create(new SpineOptions { ConnectionString = fixture.Postgres.RuntimeConnectionString });
        _database = new SpineDatabase(options);
        _writer = new JournalWriter(_database, options, NullLogger<JournalWriter>.Instance);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _writer.DisposeAsync();
        await _database.DisposeAsync();
    }

    [Fact]
    public async Task CompletedRun_StaleActivationWritesRunning_StaysCompletedWithItsResult()
    {
        var id = RunIds.New();
        await _writer.UpdateRunAsync(Row(id, RunStatus.Running, T0));
        await _writer.UpdateRunAsync(Row(id, RunStatus.Completed, T0.AddSeconds(2)) with { Result = "42" });

        // A stale activation, older or (by its clock) newer, writes what its fold says.
        await _writer.UpdateRunAsync(Row(id, RunStatus.Running, T0.AddSeconds(1)));
        await _writer.UpdateRunAsync(Row(id, RunStatus.Running, T0.AddSeconds(3)));

        Assert.Equal(((short)RunStatus.Completed, "42"), await StatusAsync(id));
    }

    [Fact]
    public async Task RunningRun_OlderWrite_IsIgnored()
    {
        var id = RunIds.New();
        await _writer.UpdateRunAsync(Row(id, RunStatus.Sleeping, T0.AddSeconds(5)));

        await _writer.UpdateRunAsync(Row(id, RunStatus.Running, T0.AddSeconds(4)));

        Assert.Equal(((short)RunStatus.Sleeping, null), await StatusAsync(id));
    }

    [Fact]
    public async Task SiloClockAhead_LaterWritesOfALongerJournal_StillApply()
    {
        var id = RunIds.New();

        // A silo whose clock runs 10 s ahead wrote last; the silo that took over stamps earlier times.
        await _writer.UpdateRunAsync(Row(id, RunStatus.Sleeping, T0.AddSeconds(10)) with { JournalSeq = 4 });
        await _writer.UpdateRunAsync(Row(id, RunStatus.Running, T0.AddSeconds(1)) with { JournalSeq = 5 });
        Assert.Equal(((short)RunStatus.Running, null), await StatusAsync(id));

        await _writer.UpdateRunAsync(Row(id, RunStatus.Completed, T0.AddSeconds(2)) with { JournalSeq = 7, Result = "1" });
        Assert.Equal(((short)RunStatus.Completed, "1"), await StatusAsync(id));

        // A stale write of a shorter journal is ignored, whatever its clock said.
        var other = RunIds.New();
        await _writer.UpdateRunAsync(Row(other, RunStatus.Running, T0) with { JournalSeq = 6 });
        await _writer.UpdateRunAsync(Row(other, RunStatus.Sleeping, T0.AddSeconds(30)) with { JournalSeq = 5 });
        Assert.Equal(((short)RunStatus.Running, null), await StatusAsync(other));
    }

    [Fact]
    public async Task DeadLetteredRun_Discarded_IsTheOneChangeAfterAFinish()
    {
        var id = RunIds.New();
        await _writer.UpdateRunAsync(Row(id, RunStatus.DeadLettered, T0));

        await _writer.UpdateRunAsync(Row(id, RunStatus.Discarded, T0.AddSeconds(1)));
        await _writer.UpdateRunAsync(Row(id, RunStatus.Running, T0.AddSeconds(2)));

        Assert.Equal(((short)RunStatus.Discarded, null), await StatusAsync(id));
    }

    private static RunRow Row(string id, RunStatus status, DateTimeOffset at) => new(id, "test.steps", 1, null, null, status, null, null, null, T0, at);

    private async Task<(short, string?)> StatusAsync(string id)
    {
        await using var command = _database.DataSource.CreateCommand("SELECT status, result FROM spine_runs WHERE run_id = @id");
        command.Parameters.AddWithValue("id", id);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        return (reader.GetInt16(0), reader.IsDBNull(1) ? null : reader.GetString(1));
    }
}
