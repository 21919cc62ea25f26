using Spine.Journal;

using Spine.Runs;

namespace Spine.Replay;

/// <summary>
/// Hands recorded outcomes back to a re-executing workflow in the order the journal recorded them.
/// </summary>
/// <remarks>
/// Parallel calls are numbered when they are issued, and what a workflow issues next depends on which call
/// finished first: in <c>WhenAll(A(), B())</c> with two calls each, B's second call took step 3 because B's
/// first call finished before A's. A journal answers synchronously, so without this order A's second call
/// would take step 3 on replay. Each recorded outcome is released only once every outcome the journal holds
/// before it has been released and its continuation has run; results of calls that run live during a
/// replay are held until every recorded outcome is out, since they came after all of them. A sequential
/// workflow always asks for the next outcome in journal order and gets it after one scheduler hop.
/// A branch must not await anything but context calls between two of them: the journal records the order in
/// which calls completed, not how long a branch took between them.
/// </remarks>
internal sealed class ReplayOrder
{
    private readonly List<int> _order;
    private readonly Dictionary<int, TaskCompletionSource> _parked = [];
    private TaskCompletionSource? _drained;
    private Exception? _poison;
    private int _next;
    private bool _pumping;

    /// <param name="history">The run's journal.</param>
    /// <param name="timersFire">Whether the journal records when each sleep ended (journal format 2); older
    /// journals count a sleep as ended where its wake-up time was recorded.</param>
    public ReplayOrder(RunHistory history, bool timersFire)
    {
        ArgumentNullException.ThrowIfNull(history);
        var fired = timersFire
            ? history.Events(JournalKind.TimerFired).ToDictionary(r => r.Step!.Value, r => r.Seq)
            : null;
        _order = history.Outcomes
            .Select(r => (r.Step!.Value, Seq: r.Kind != JournalKind.Timer || fired is null ? r.Seq : fired.GetValueOrDefault(r.Step!.Value, -1)))
            .Where(o => o.Seq >= 0)
            .OrderBy(o => o.Seq)
            .Select(o => o.Value)
            .ToList();
    }

    /// <summary>An order with nothing recorded (calls made outside a workflow's execution, such as compensations).</summary>
    public static ReplayOrder None { get; } = new(new RunHistory(), timersFire: true);

    /// <summary>True once the replay cannot go on (see <see cref="Poison"/>): every call fails with the run's error.</summary>
    public bool Poisoned => _poison is not null;

    /// <summary>True once every recorded outcome has been handed back.</summary>
    public bool Drained => _next >= _order.Count;

    /// <summary>Whether <paramref name="step"/>'s recorded end is among those to hand back (a sleep not yet ended is not).</summary>
    public bool Holds(int step) => _order.IndexOf(step, _next) >= 0;

    /// <summary>
    /// Completes when it is <paramref name="step"/>'s turn. Never synchronously, even when the step is next in
    /// journal order: the calls the workflow issues in the same turn (a parallel branch not yet started) must
    /// get their numbers first, as they did in the first execution.
    /// </summary>
    public Task TurnAsync(int step)
    {
        if (_poison is not null)
        {
            return Task.FromException(_poison);
        }

        if (!Holds(step))
        {
            return Task.CompletedTask;
        }

        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _parked[step] = gate;
        Kick();
        return gate.Task;
    }

    /// <summary>Completes once every recorded outcome has been handed back (at once when none is left).</summary>
    public Task DrainedAsync() =>
        _poison is not null ? Task.FromException(_poison)
        : Drained ? Task.CompletedTask
        : (_drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    /// <summary>
    /// The replay cannot go on (a call no longer matches the journal): every parked call and every later one
    /// fails with <paramref name="error"/>, so that parallel branches end instead of waiting for ever.
    /// </summary>
    public void Poison(Exception error)
    {
        _poison ??= error;
        foreach (var gate in _parked.Values)
        {
            gate.TrySetException(error);
        }

        _parked.Clear();
        _drained?.TrySetException(error);
    }

    private void Kick()
    {
        if (_poison is not null)
        {
            return;
        }

        if (Drained)
        {
            _drained?.TrySetResult();
            return;
        }

        if (!_pumping && _parked.ContainsKey(_order[_next]))
        {
            _pumping = true;
            _ = PumpAsync();
        }
    }

    private async Task PumpAsync()
    {
        try
        {
            while (true)
            {
                // The continuation of the outcome handed back last runs first (it may issue the next call).
                await Task.Yield();
                if (_poison is not null || Drained || !_parked.Remove(_order[_next], out var gate))
                {
                    break;
                }

                _next++;
                gate.SetResult();
            }
        }
        finally
        {
            _pumping = false;
        }

        if (Drained)
        {
            _drained?.TrySetResult();
        }
    }
}
