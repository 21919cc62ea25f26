using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Spine.Hosting;
using Spine.Journal;

namespace Spine.Runs;

/// <summary>
/// Resumes executing runs whose silo died, and brings waiting runs back into memory before their wait is due. A
/// run needs no reminder of its own: the index row that its start committed says it is executing, and the one that
/// says it waits says until when (<c>wake_at</c>), and this sweep activates it again. The sweep
/// is partitioned by a hash of the run id (<see cref="Partitions"/> grains, keyed 0..15, each with its
/// own reminder and placed at random), and every silo sweeps all partitions at once when membership
/// declares a silo dead. Touching a run that is alive is a cheap no-op.
/// </summary>
[Orleans.Placement.RandomPlacement]
public sealed partial class RunRecoveryGrain(JournalStore store, IOptions<SpineOptions> options, TimeProvider time, ILogger<RunRecoveryGrain> logger) : Grain, IRunRecoveryGrain, IRemindable
{
    /// <summary>How many sweep partitions there are (fixed by the schema: <c>spine_runs.sweep_partition</c>).</summary>
    public const int Partitions = 16;

    private const string SweepReminderName = "spine.sweep";
    private const int Parallelism = 64;
    private const int PageSize = 1000;
    private bool _sweeping;

    /// <inheritdoc />
    public async Task StartAsync()
    {
        var period = options.Value.ResumeReminderPeriod;
        if (await this.GetReminder(SweepReminderName) is null)
        {
            await this.RegisterOrUpdateReminder(SweepReminderName, period, period);
        }

        // A silo that just started may be the replacement of one that died: sweep soon, not a period from now.
        this.RegisterGrainTimer(() => SweepAsync(), new GrainTimerCreationOptions { DueTime = TimeSpan.Zero, Period = Timeout.InfiniteTimeSpan });
    }

    /// <summary>
    /// How far ahead the sweep looks for waiting runs (<c>spine_runs.wake_at</c>): two sweep periods, so that a sweep
    /// that comes late still finds a wait in memory before it is due. A run brought back for a wait stays in memory
    /// until then (it is not collected as idle).
    /// </summary>
    public static TimeSpan WakeHorizon(TimeSpan sweepPeriod) => 2 * sweepPeriod;

    /// <inheritdoc />
    public async Task<int> SweepAsync()
    {
        if (_sweeping)
        {
            return 0;
        }

        _sweeping = true;
        try
        {
            var partition = (int)this.GetPrimaryKeyLong();

            // Executing runs whose silo may have died, then waiting runs whose wait is due before the next sweeps:
            // touching one brings it into memory, where its wait's timer fires on time.
            var touched = await TouchAllAsync((after, limit) => store.ListExecutingAsync(partition, after, limit));
            var horizon = time.GetUtcNow() + WakeHorizon(options.Value.ResumeReminderPeriod);
            touched += await TouchAllAsync((after, limit) => store.ListDueAsync(partition, horizon, after, limit));
            return touched;
        }
        finally
        {
            _sweeping = false;
        }
    }

    /// <summary>Resumes every run of a listing, page by page, so that no number of runs hides any of them from the sweep.</summary>
    private async Task<int> TouchAllAsync(Func<(string RunId, DateTime At)?, int, Task<IReadOnlyList<(string RunId, DateTime At)>>> list)
    {
        var touched = 0;
        (string RunId, DateTime At)? after = null;
        while (true)
        {
            var page = await list(after, PageSize);
            foreach (var chunk in page.Chunk(Parallelism))
            {
                await Task.WhenAll(chunk.Select(async run =>
                {
                    try
                    {
                        await GrainFactory.GetGrain<IWorkflowRunGrain>(run.RunId).ResumeAsync();
                        Interlocked.Increment(ref touched);
                    }
                    catch (Exception e)
                    {
                        LogTouchFailed(logger, e, run.RunId);
                    }
                }));
            }

            if (page.Count < PageSize)
            {
                return touched;
            }

            after = page[^1];
        }
    }

    /// <inheritdoc />
    public Task ReceiveReminder(string reminderName, TickStatus status) => SweepAsync();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Recovery sweep: touching run {RunId} failed; the next sweep tries again")]
    private static partial void LogTouchFailed(ILogger logger, Exception exception, string runId);
}

/// <summary>
/// Starts the recovery sweep's partitions when a silo becomes active, and, on the live silo with the lowest
/// address, sweeps every partition at once when membership declares a silo dead, so its runs resume in
/// seconds rather than a sweep period later.
/// </summary>
internal sealed partial class RunRecoveryStarter(IGrainFactory grains, IClusterMembershipService membership, ILocalSiloDetails local, ILogger<RunRecoveryStarter> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    private readonly CancellationTokenSource _stopping = new();

    public void Participate(ISiloLifecycle observer) =>
        observer.Subscribe(
            nameof(RunRecoveryStarter),
            ServiceLifecycleStage.Active,
            started =>
            {
                _ = Task.Run(() => StartWithRetriesAsync(_stopping.Token), CancellationToken.None);
                _ = Task.Run(() => WatchMembershipAsync(_stopping.Token), CancellationToken.None);
                return Task.CompletedTask;
            },
            stopping => _stopping.CancelAsync());

    // Until the sweep's reminders exist nothing resumes the runs of a silo that dies, so keep trying.
    private async Task StartWithRetriesAsync(CancellationToken stopping)
    {
        for (var delay = TimeSpan.FromSeconds(1); !stopping.IsCancellationRequested; delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromMinutes(1).Ticks)))
        {
            try
            {
                await Task.WhenAll(Enumerable.Range(0, RunRecoveryGrain.Partitions).Select(p => grains.GetGrain<IRunRecoveryGrain>(p).StartAsync()));
                return;
            }
            catch (Exception e) when (!stopping.IsCancellationRequested)
            {
                LogStartFailed(logger, e);
            }

            try
            {
                await Task.Delay(delay, stopping);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task WatchMembershipAsync(CancellationToken stopping)
    {
        var dead = membership.CurrentSnapshot.Members.Values.Where(m => m.Status == SiloStatus.Dead).Select(m => m.SiloAddress).ToHashSet();
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stopping))
            {
                var newlyDead = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Dead && dead.Add(m.SiloAddress)).Select(m => m.SiloAddress).ToList();
                // One silo sweeps (the live one with the lowest address); the partitions' reminders are the backstop.
                var sweeper = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.SiloAddress).Min();
                if (newlyDead.Count == 0 || !local.SiloAddress.Equals(sweeper))
                {
                    continue;
                }

                LogSiloDied(logger, string.Join(", ", newlyDead));
                await Task.WhenAll(Enumerable.Range(0, RunRecoveryGrain.Partitions).Select(async p =>
                {
                    try
                    {
                        await grains.GetGrain<IRunRecoveryGrain>(p).SweepAsync();
                    }
                    catch (Exception e) when (!stopping.IsCancellationRequested)
                    {
                        // The partition's reminder sweeps it a period later.
                        LogSweepFailed(logger, e, p);
                    }
                }));
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Starting the run recovery sweep failed; trying again")]
    private static partial void LogStartFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Silo {Silos} declared dead: sweeping every recovery partition now")]
    private static partial void LogSiloDied(ILogger logger, string silos);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sweeping recovery partition {Partition} after a silo died failed")]
    private static partial void LogSweepFailed(ILogger logger, Exception exception, int partition);
}
