using System.Text.Json;
using Spine.Errors;
using Spine.Hosting;
using Spine.Identity;
using Spine.Journal;
using Spine.Runs;
using Spine.Waits;

namespace Spine.Signals;

/// <summary>A signal as its <see cref="JournalKind.SignalReceived"/> row records it.</summary>
/// <param name="Id">The sender's signal id, or one generated for it: what a wait records having received.</param>
/// <param name="Payload">The signal's payload.</param>
/// <param name="Actor">Who sent it.</param>
internal sealed record SignalPayload(string Id, JsonElement Payload, SpineActor? Actor = null);

/// <summary>What a <see cref="JournalKind.Signal"/> outcome records: the signal received, or the deadline that passed.</summary>
internal sealed record SignalOutcomePayload(string? Id, JsonElement? Payload, SpineActor? Actor, DateTimeOffset? Deadline = null);

/// <summary>What a <see cref="JournalKind.SignalAwaited"/> row records: when the wait gives up (null: never).</summary>
internal sealed record SignalAwaitedPayload(DateTimeOffset? Deadline);

/// <summary>
/// The signals of one run's activation: journals the signals sent to the run and hands each, oldest first per
/// name, to one wait of the workflow. A signal is durable before anyone hears of it, so one sent before the
/// workflow waits is there when it does, in this activation or a later one; which wait received which signal
/// is the waits' outcomes, so a re-execution hands out the same ones.
/// </summary>
internal sealed class SignalInbox(string runId, RunJournal journal, DurableWaits waits, SpineOptions options, TimeProvider time, CancellationToken stopping)
{
    /// <summary>The prefix of the names Spine keeps for its own signals (approvals); a caller cannot send them.</summary>
    public const string ReservedPrefix = "spine.";

    private readonly Dictionary<string, List<TaskCompletionSource>> _waiting = new(StringComparer.Ordinal);
    private readonly HashSet<string> _claimed = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Task<bool>> _sending = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _arriving = new(StringComparer.Ordinal);
    private readonly HashSet<string> _closedNames = new(StringComparer.Ordinal);
    private bool _closed;

    /// <summary>How many of the workflow's calls wait for a signal now (approvals not counted).</summary>
    public int Waiting { get; private set; }

    /// <summary>How many of the workflow's calls wait for an approval now.</summary>
    public int WaitingForApproval { get; private set; }

    /// <summary>Checks a signal's name, payload and sender, with typed errors, before anything is journaled.</summary>
    public JsonElement Check(SignalRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        CheckName(request.Name);
        if (request.Name.StartsWith(ReservedPrefix, StringComparison.Ordinal))
        {
            throw new InvalidPayloadException("signal name", $"'{request.Name}': names starting with '{ReservedPrefix}' are Spine's own");
        }

        RunIds.CheckIdentifier(request.SignalId, "signal id");
        request.Actor?.Check();
        return RunPayloads.CheckJson(request.PayloadJson ?? "null", $"payload of signal '{request.Name}'", options.MaxPayloadBytes);
    }

    /// <summary>Refuses an empty name or one with control characters.</summary>
    public static void CheckName(string? name)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new InvalidIdentifierException("signal name", 0);
        }

        RunIds.CheckIdentifier(name, "signal name");
    }

    /// <summary>Whether a wait for <paramref name="name"/> is armed (or woken and not yet resumed): it states the run's status itself.</summary>
    public bool IsAwaited(string name) => _waiting.ContainsKey(name);

    /// <summary>The run's workflow has ended (it is finishing): no signal is taken from now on.</summary>
    public void Close() => _closed = true;

    /// <summary>Whether signals of <paramref name="name"/> are refused because the one wait for them ended (an approval's deadline acted).</summary>
    public bool IsClosed(string name) => _closed || _closedNames.Contains(name);

    /// <summary>
    /// Journals a signal and wakes the waits for its name. A signal whose (name, id) the run already holds (a
    /// sender's retry) is not journaled again, even after the run finished; one being journaled right now is
    /// waited for. Returns false when it was such a repeat. The row commits with the run's index row saying the run
    /// executes, so that a silo dying before the signal is handed over leaves the run where the recovery sweep looks.
    /// </summary>
    /// <exception cref="InvalidRunStateException">The run has finished or is on its way to its end.</exception>
    public async Task<bool> ReceiveAsync(string name, JsonElement payload, string? signalId, SpineActor? actor)
    {
        var state = journal.State ?? throw new RunNotFoundException(runId);
        var id = signalId ?? "g-" + Guid.NewGuid().ToString("N");
        var key = name + "\n" + id;
        while (_sending.TryGetValue(key, out var inFlight))
        {
            // A retry while the first send is being journaled: answered once that one is durable (or tried again if it failed).
            if (await inFlight)
            {
                return false;
            }
        }

        if (Received(name, id))
        {
            return false;
        }

        if (IsClosed(name) || state.Status.IsTerminal() || state.CancelRequested || state.Compensation is not null)
        {
            var why = state.Status.IsTerminal() || _closed ? " that has finished" : state.CancelRequested ? " that is being cancelled"
                : state.Compensation is not null ? " that is compensating" : " whose wait for it has ended";
            throw new InvalidRunStateException(runId, state.Status, $"signal '{name}' to a run{why}");
        }

        // Claimed before the first await: this interleaves, and a second send of the same id must not get through.
        var sending = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _sending[key] = sending.Task;
        _arriving[name] = _arriving.GetValueOrDefault(name) + 1;
        try
        {
            await journal.TransitionAsync([new PendingRow(JournalKind.SignalReceived, null, name, true, RunPayloads.Write(new SignalPayload(id, payload, actor)), null)], RunStatus.Running);
            sending.SetResult(true);
        }
        catch
        {
            sending.SetResult(false);
            throw;
        }
        finally
        {
            _sending.Remove(key);
            if (--_arriving[name] == 0)
            {
                _arriving.Remove(name);
            }

            Wake(name);
        }

        return true;
    }

    /// <summary>
    /// Waits for the oldest signal of <paramref name="name"/> that no other wait received, until
    /// <paramref name="deadline"/> (null: for as long as it takes). Returns its row, claimed for this wait, or null
    /// when the deadline passed first (a signal being journaled at the deadline is waited for, and wins). The
    /// deadline is journaled before the first real wait when <paramref name="recordDeadline"/>, so a re-execution
    /// keeps it; the run's reminder backs it across silos. With <paramref name="closeOnTimeout"/>, a deadline that
    /// passed refuses later signals of the name.
    /// </summary>
    public async Task<JournalRow?> AwaitAsync(int step, string name, DateTimeOffset? deadline, bool recordDeadline, bool approval, bool closeOnTimeout,
        Func<Task> refreshStatus, Action throwIfCancelled)
    {
        while (true)
        {
            throwIfCancelled();

            // The scan and the arming below happen in one turn: a signal journaled in between cannot be missed.
            if (TryClaim(name) is { } signal)
            {
                return signal;
            }

            var due = deadline is { } d && d <= time.GetUtcNow();
            if (due && !_arriving.ContainsKey(name))
            {
                if (closeOnTimeout)
                {
                    _closedNames.Add(name);
                }

                return null;
            }

            if (recordDeadline)
            {
                recordDeadline = false;
                await journal.AppendAsync(JournalKind.SignalAwaited, step, name, true, RunPayloads.Write(new SignalAwaitedPayload(deadline)));
                continue;
            }

            await WaitOnceAsync(name, due ? null : deadline, approval, refreshStatus);
        }
    }

    /// <summary>Ends every wait now (a cancel): each checks why and throws.</summary>
    public void WakeAll()
    {
        foreach (var name in _waiting.Keys.ToList())
        {
            Wake(name);
        }
    }

    private async Task WaitOnceAsync(string name, DateTimeOffset? deadline, bool approval, Func<Task> refreshStatus)
    {
        var wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_waiting.TryGetValue(name, out var list))
        {
            _waiting[name] = list = [];
        }

        list.Add(wake);
        Count(approval, +1);
        var timer = deadline is { } due ? waits.Register(due, WaitKind.Retry) : null;
        Task? elapsed = null;
        try
        {
            await using (stopping.Register(() => wake.TrySetCanceled()))
            {
                // The index row that says the run waits carries the deadline, for the recovery sweep.
                await refreshStatus();
                elapsed = timer?.ElapsedAsync();
                await (elapsed is null ? wake.Task : Task.WhenAny(wake.Task, elapsed));
                stopping.ThrowIfCancellationRequested();
            }
        }
        finally
        {
            Count(approval, -1);
            list.Remove(wake);
            if (list.Count == 0)
            {
                _waiting.Remove(name);
            }

            if (timer is not null)
            {
                // A signal came first: end the wait's timer too.
                timer.Wake();
                if (elapsed is not null)
                {
                    await elapsed.ContinueWith(static _ => { }, TaskScheduler.Current);
                }

                timer.Dispose();
            }
        }

        await refreshStatus();
    }

    private void Count(bool approval, int change)
    {
        if (approval)
        {
            WaitingForApproval += change;
        }
        else
        {
            Waiting += change;
        }
    }

    private void Wake(string name)
    {
        if (_waiting.TryGetValue(name, out var list))
        {
            foreach (var waiter in list)
            {
                waiter.TrySetResult();
            }
        }
    }

    /// <summary>The oldest signal of a name that no wait's outcome received and no live wait claimed; claims it.</summary>
    private JournalRow? TryClaim(string name)
    {
        var rows = journal.History.Rows;
        var received = new HashSet<string>(StringComparer.Ordinal);
        foreach (var row in rows)
        {
            if (row is { Kind: JournalKind.Signal, Ok: true } && row.Name == name && RunPayloads.Read<SignalOutcomePayload>(row.Payload).Id is { } id)
            {
                received.Add(id);
            }
        }

        foreach (var row in rows)
        {
            if (row.Kind == JournalKind.SignalReceived && row.Name == name)
            {
                var id = RunPayloads.Read<SignalPayload>(row.Payload).Id;
                if (!received.Contains(id) && _claimed.Add(id))
                {
                    return row;
                }
            }
        }

        return null;
    }

    private bool Received(string name, string id) =>
        journal.History.Rows.Any(r => r.Kind == JournalKind.SignalReceived && r.Name == name && RunPayloads.Read<SignalPayload>(r.Payload).Id == id);

    /// <summary>
    /// A signal outcome as a replay copies it into a new run: without the id of the source run's signal, which the
    /// new run never received (its own signals may reuse the id).
    /// </summary>
    public static string? ForgetId(string? outcome) =>
        outcome is null ? null : RunPayloads.Write(RunPayloads.Read<SignalOutcomePayload>(outcome) with { Id = null });
}
