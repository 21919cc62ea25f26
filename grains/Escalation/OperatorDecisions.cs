using Spine.Runs;

namespace Spine.Escalation;

/// <summary>
/// The escalated steps of one run's activation that wait for an operator, and the decisions being journaled.
/// Several parallel steps may wait at once; a cancel ends every wait.
/// </summary>
internal sealed class OperatorDecisions(CancellationToken stopping)
{
    private readonly Dictionary<int, TaskCompletionSource<OperatorAction>> _waiting = [];
    private readonly HashSet<int> _claimed = [];

    /// <summary>Arms the wait for a step's decision before anything is awaited, so no decision or cancel is missed.</summary>
    public TaskCompletionSource<OperatorAction> Arm(int step) =>
        _waiting[step] = new TaskCompletionSource<OperatorAction>(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Drops an armed wait that will not be awaited.</summary>
    public void Disarm(int step) => _waiting.Remove(step);

    /// <summary>
    /// Claims the decision on a step, synchronously: a second decision while the first is journaled (a second
    /// operator, a retried call) gets false. <see cref="Release"/> once the decision is durable or refused.
    /// </summary>
    public bool TryClaim(int step) => _claimed.Add(step);

    public void Release(int step) => _claimed.Remove(step);

    /// <summary>Hands a durable decision to the step waiting for it, if it waits in this activation.</summary>
    public void Decide(int step, OperatorAction action)
    {
        if (_waiting.TryGetValue(step, out var waiter))
        {
            waiter.TrySetResult(action);
        }
    }

    /// <summary>Ends every wait with <paramref name="error"/> (the run is being cancelled).</summary>
    public void FailAll(Exception error)
    {
        foreach (var decision in _waiting.Values)
        {
            decision.TrySetException(error);
        }
    }

    /// <summary>Waits for the decision armed by <see cref="Arm"/>; cancelled when the activation ends.</summary>
    public async Task<OperatorAction> WaitAsync(int step, TaskCompletionSource<OperatorAction> decision)
    {
        await using (stopping.Register(() => decision.TrySetCanceled()))
        {
            try
            {
                return await decision.Task;
            }
            finally
            {
                if (_waiting.TryGetValue(step, out var current) && current == decision)
                {
                    _waiting.Remove(step);
                }
            }
        }
    }
}
