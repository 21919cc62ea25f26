using Spine.Approvals;
using Spine.Errors;

namespace Spine.Runs;

/// <summary>Signals and approval decisions sent to the run (see <see cref="Signals.SignalInbox"/> and <see cref="ApprovalGate"/>).</summary>
public sealed partial class WorkflowRunGrain
{
    /// <inheritdoc />
    public async Task<RunInfo> SignalAsync(SignalRequest request)
    {
        var payload = _signals.Check(request);
        _journal.ThrowIfTampered();
        await _signals.ReceiveAsync(request.Name, payload, request.SignalId, request.Actor);
        await AfterSignalAsync(request.Name);
        return Info();
    }

    /// <inheritdoc />
    public async Task<RunInfo> DecideApprovalAsync(ApprovalVerdict verdict)
    {
        _journal.ThrowIfTampered();
        var state = State ?? throw new RunNotFoundException(RunId);
        var wait = ApprovalGate.Authorize(RunId, state, verdict, Time.GetUtcNow());
        var name = ApprovalGate.SignalName(wait.Step);
        if (_signals.IsClosed(name))
        {
            throw new ApprovalNotPendingException(RunId, state.Status, $"the approval at step {wait.Step} was decided by its deadline");
        }

        // Claimed before the first await: a second approver (or a retried call) interleaving here is refused.
        wait.Decided = true;
        try
        {
            await _signals.ReceiveAsync(name, ApprovalGate.VerdictPayload(verdict), signalId: null, verdict.Actor);
        }
        catch
        {
            wait.Decided = false;
            throw;
        }

        await AfterSignalAsync(name);
        return Info();
    }

    /// <summary>
    /// The signal's row committed with the index saying the run executes. The wait it woke states the run's status
    /// once it has taken the signal; when none waits for it (it arrived early), the status the live calls add up to
    /// is stated here.
    /// </summary>
    private async Task AfterSignalAsync(string name)
    {
        StartExecution();
        if (!_signals.IsAwaited(name))
        {
            await RefreshStatusAsync();
        }
    }
}
