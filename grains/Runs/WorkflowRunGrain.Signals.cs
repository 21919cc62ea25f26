namespace Spine.Runs;

/// <summary>Signals sent to the run (see <see cref="Signals.SignalInbox"/>).</summary>
public sealed partial class WorkflowRunGrain
{
    /// <inheritdoc />
    public async Task<RunInfo> SignalAsync(SignalRequest request)
    {
        var payload = _signals.Check(request);
        _journal.ThrowIfTampered();
        await _signals.ReceiveAsync(request, payload);

        // An activation brought up by the signal is already executing; this covers one that stepped aside.
        StartExecution();
        return Info();
    }
}
