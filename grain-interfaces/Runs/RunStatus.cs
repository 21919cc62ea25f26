namespace Spine.Runs;

/// <summary>Where a workflow run is in its life.</summary>
/// <remarks>Stored as its integer value in <c>spine_runs.status</c>: never renumber a member.</remarks>
public enum RunStatus
{
    /// <summary>Accepted, its start recorded, not yet executing.</summary>
    Pending = 0,

    /// <summary>Executing steps.</summary>
    Running = 1,

    /// <summary>Waiting on a durable timer (<c>ctx.SleepAsync</c>).</summary>
    Sleeping = 2,

    /// <summary>Finished with a result.</summary>
    Completed = 3,

    /// <summary>Finished with an error.</summary>
    Failed = 4,

    /// <summary>Stopped by a cancel request.</summary>
    Cancelled = 5,
}

/// <summary>Helpers over <see cref="RunStatus"/>.</summary>
public static class RunStatusExtensions
{
    /// <summary>True for statuses a run never leaves.</summary>
    public static bool IsTerminal(this RunStatus status) =>
        status is RunStatus.Completed or RunStatus.Failed or RunStatus.Cancelled;
}
