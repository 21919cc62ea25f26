using Microsoft.Extensions.Logging;

namespace Spine.Hosting;

/// <summary>
/// Cluster-wide periodic work driven from every silo: while the silo is active it calls <see cref="TickAsync"/> at once
/// and then every <see cref="Period"/>; the work itself lives in one grain, so it moves to another silo when its own
/// dies. A failed tick is logged and waits for the next period.
/// </summary>
internal abstract partial class SiloTicker(ILogger logger) : ILifecycleParticipant<ISiloLifecycle>
{
    private readonly CancellationTokenSource _stopping = new();

    /// <summary>How often to tick.</summary>
    protected abstract TimeSpan Period { get; }

    /// <summary>Whether to tick at all.</summary>
    protected virtual bool Enabled => true;

    public void Participate(ISiloLifecycle observer) =>
        observer.Subscribe(
            GetType().Name,
            ServiceLifecycleStage.Active,
            started =>
            {
                if (Enabled)
                {
                    _ = Task.Run(() => RunAsync(_stopping.Token), CancellationToken.None);
                }

                return Task.CompletedTask;
            },
            stopping => _stopping.CancelAsync());

    /// <summary>One tick.</summary>
    protected abstract Task TickAsync();

    private async Task RunAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(Period);
        do
        {
            try
            {
                await TickAsync();
            }
            catch (Exception e) when (!stopping.IsCancellationRequested)
            {
                LogTickFailed(logger, e, GetType().Name);
            }
        }
        while (await NextAsync(timer, stopping));
    }

    private static async Task<bool> NextAsync(PeriodicTimer timer, CancellationToken stopping)
    {
        try
        {
            return await timer.WaitForNextTickAsync(stopping);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Ticker} failed; the next period tries again")]
    private static partial void LogTickFailed(ILogger logger, Exception exception, string ticker);
}
