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

    /// <summary>A step exhausted its retries and the workflow's policy asks an operator to retry it, skip it or fail the run.</summary>
    AwaitingOperator = 6,

    /// <summary>Running the compensations of completed steps, in reverse order, after a failure or a cancel.</summary>
    Compensating = 7,

    /// <summary>Failed after exhausting retries (or a compensation did): kept for inspection, replay or discard.</summary>
    DeadLettered = 8,

    /// <summary>A dead-lettered run an operator discarded.</summary>
    Discarded = 9,

    /// <summary>The run's journal does not verify (edited, cut or forged): it never executes again; <c>audit verify</c> says where.</summary>
    Quarantined = 10,

    /// <summary>Waiting for a signal (<c>ctx.WaitForSignalAsync</c>), until it arrives or the wait's deadline passes.</summary>
    AwaitingSignal = 11,

    /// <summary>Waiting for a human's approval (<c>ctx.RequestApprovalAsync</c>), until an approver decides or the deadline acts.</summary>
    AwaitingApproval = 12,

    /// <summary>Paused by its account's budget until the budget's window resets (a durable wait: the recovery sweep brings the run back by its end).</summary>
    AwaitingBudget = 13,
}

/// <summary>Helpers over <see cref="RunStatus"/>.</summary>
public static class RunStatusExtensions
{
    /// <summary>True for statuses a run never leaves.</summary>
    public static bool IsTerminal(this RunStatus status) =>
        status is RunStatus.Completed or RunStatus.Failed or RunStatus.Cancelled or RunStatus.DeadLettered or RunStatus.Discarded
            or RunStatus.Quarantined;
}
