namespace Spine.Telemetry;

/// <summary>
/// The cluster's one reader of the run index for gauges (approvals waiting and their age, the dead-letter queue's
/// size): every silo asks it to refresh now and then, and the silo that hosts it reports what it read.
/// </summary>
[Alias("spine.IRunGaugeGrain")]
public interface IRunGaugeGrain : IGrainWithIntegerKey
{
    /// <summary>Reads the index again unless it did so within half of <paramref name="period"/>.</summary>
    [Alias("RefreshAsync")]
    Task RefreshAsync(TimeSpan period);
}
