using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Spine.Hosting;
using Spine.Journal;

namespace Spine.Runs;

/// <summary>
/// Resumes executing runs whose silo died. A run needs no reminder of its own while it executes: the
/// index row that its start committed says it is executing, and this sweep, driven by a single
/// cluster-wide reminder, activates it again. Touching a run that is alive is a cheap no-op.
/// </summary>
public sealed partial class RunRecoveryGrain(JournalStore store, IOptions<SpineOptions> options, ILogger<RunRecoveryGrain> logger) : Grain, IRunRecoveryGrain, IRemindable
{
    private const string SweepReminderName = "spine.sweep";
    private const int Parallelism = 64;
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
            var runIds = await store.ListExecutingAsync(50_000);
            var touched = 0;
            foreach (var chunk in runIds.Chunk(Parallelism))
            {
                await Task.WhenAll(chunk.Select(async id =>
                {
                    try
                    {
                        await GrainFactory.GetGrain<IWorkflowRunGrain>(id).GetInfoAsync();
                        Interlocked.Increment(ref touched);
                    }
                    catch (Exception e)
                    {
                        LogTouchFailed(logger, e, id);
                    }
                }));
            }

            return touched;
        }
        finally
        {
            _sweeping = false;
        }
    }

    /// <inheritdoc />
    public Task ReceiveReminder(string reminderName, TickStatus status) => SweepAsync();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Recovery sweep: touching run {RunId} failed; the next sweep tries again")]
    private static partial void LogTouchFailed(ILogger logger, Exception exception, string runId);
}

/// <summary>Starts the recovery sweep when a silo becomes active.</summary>
internal sealed partial class RunRecoveryStarter(IGrainFactory grains, ILogger<RunRecoveryStarter> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    public void Participate(ISiloLifecycle observer) =>
        observer.Subscribe(nameof(RunRecoveryStarter), ServiceLifecycleStage.Active, async _ =>
        {
            try
            {
                await grains.GetGrain<IRunRecoveryGrain>(0).StartAsync();
            }
            catch (Exception e)
            {
                // Another silo's start (or the reminder already registered) keeps the sweep going.
                LogStartFailed(logger, e);
            }
        });

    [LoggerMessage(Level = LogLevel.Warning, Message = "Starting the run recovery sweep failed")]
    private static partial void LogStartFailed(ILogger logger, Exception exception);
}
