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
            var touched = 0;
            (string RunId, DateTime UpdatedAt)? after = null;
            while (true)
            {
                // Paged, so that no number of executing runs hides any of them from the sweep.
                var page = await store.ListExecutingAsync(after, PageSize);
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
                    break;
                }

                after = page[^1];
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
        observer.Subscribe(
            nameof(RunRecoveryStarter),
            ServiceLifecycleStage.Active,
            started =>
            {
                _ = Task.Run(() => StartWithRetriesAsync(_stopping.Token), CancellationToken.None);
                return Task.CompletedTask;
            },
            stopping => _stopping.CancelAsync());

    private readonly CancellationTokenSource _stopping = new();

    // Until the sweep's reminder exists nothing resumes the runs of a silo that dies, so keep trying.
    private async Task StartWithRetriesAsync(CancellationToken stopping)
    {
        for (var delay = TimeSpan.FromSeconds(1); !stopping.IsCancellationRequested; delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromMinutes(1).Ticks)))
        {
            try
            {
                await grains.GetGrain<IRunRecoveryGrain>(0).StartAsync();
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Starting the run recovery sweep failed; trying again")]
    private static partial void LogStartFailed(ILogger logger, Exception exception);
}
