namespace Spine.Runs;

/// <summary>
/// Wakes the calls that wait for a run's status to change (<see cref="IWorkflowRunGrain.WaitForStatusAsync"/>):
/// pulsed after every write of the run and wherever its status changes in memory. A waiter looks at the status again
/// on each pulse, so a pulse that changed nothing costs it one look.
/// </summary>
internal sealed class StatusWatch
{
    private TaskCompletionSource? _next;

    /// <summary>Completes at the next pulse.</summary>
    public Task Next => (_next ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    /// <summary>Wakes every waiter (no cost when none waits).</summary>
    public void Pulse()
    {
        var next = _next;
        _next = null;
        next?.TrySetResult();
    }
}
