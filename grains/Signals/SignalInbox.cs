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
    private readonly HashSet<string> _sending = new(StringComparer.Ordinal);

    /// <summary>How many of the workflow's calls wait for a signal now.</summary>
    public int Waiting { get; private set; }

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

    /// <summary>
    /// Journals a signal and wakes the waits for its name. A signal whose id the run already holds (a sender's
    /// retry) is not journaled again. Returns false when it was such a repeat.
    /// </summary>
    /// <exception cref="InvalidRunStateException">The run has finished or is on its way to its end.</exception>
    public async Task<bool> ReceiveAsync(SignalRequest request, JsonElement payload)
    {
        var state = journal.State ?? throw new RunNotFoundException(runId);
        if (state.Status.IsTerminal() || state.CancelRequested || state.Compensation is not null)
        {
            var why = state.Status.IsTerminal() ? "" : state.CancelRequested ? " that is being cancelled" : " that is compensating";
            throw new InvalidRunStateException(runId, state.Status, $"signal '{request.Name}' to a run{why}");
        }

        var id = request.SignalId ?? "g-" + Guid.NewGuid().ToString("N");

        // Claimed before the first await: this interleaves, and a second send of the same id must not get through.
        if (Received(id) || !_sending.Add(id))
        {
            return false;
        }

        try
        {
            await journal.AppendAsync(JournalKind.SignalReceived, null, request.Name, true, RunPayloads.Write(new SignalPayload(id, payload, request.Actor)));
        }
        finally
        {
            _sending.Remove(id);
        }

        Wake(request.Name);
        return true;
    }

    /// <summary>
    /// Waits for the oldest signal of <paramref name="name"/> that no other wait received, until
    /// <paramref name="deadline"/> (null: for as long as it takes). Returns its row, claimed for this wait, or null
    /// when the deadline passed first. The deadline is journaled before the first real wait when
    /// <paramref name="recordDeadline"/>, so a re-execution keeps it; the run's reminder backs it across silos.
    /// </summary>
    public async Task<JournalRow?> AwaitAsync(int step, string name, DateTimeOffset? deadline, bool recordDeadline, Func<Task> refreshStatus, Action throwIfCancelled)
    {
        while (true)
        {
            throwIfCancelled();

            // The scan and the arming below happen in one turn: a signal journaled in between cannot be missed.
            if (TryClaim(name) is { } signal)
            {
                return signal;
            }

            if (deadline is { } due && due <= time.GetUtcNow())
            {
                return null;
            }

            if (recordDeadline)
            {
                recordDeadline = false;
                await journal.AppendAsync(JournalKind.SignalAwaited, step, name, true, RunPayloads.Write(new SignalAwaitedPayload(deadline)));
                continue;
            }

            await WaitOnceAsync(name, deadline, refreshStatus);
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

    private async Task WaitOnceAsync(string name, DateTimeOffset? deadline, Func<Task> refreshStatus)
    {
        var wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_waiting.TryGetValue(name, out var list))
        {
            _waiting[name] = list = [];
        }

        list.Add(wake);
        Waiting++;
        var timer = deadline is { } due ? waits.Register(due, sleeping: false) : null;
        Task? elapsed = null;
        try
        {
            await using (stopping.Register(() => wake.TrySetCanceled()))
            {
                if (timer is not null)
                {
                    // The backstop is in place before the status says the run is not executing.
                    await waits.EnsureReminderAsync();
                    elapsed = timer.ElapsedAsync();
                }

                await refreshStatus();
                await (elapsed is null ? wake.Task : Task.WhenAny(wake.Task, elapsed));
                stopping.ThrowIfCancellationRequested();
            }
        }
        finally
        {
            Waiting--;
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
        if (timer is not null)
        {
            // The reminder may have been due at this wait: it must now cover the earliest wait still pending.
            await waits.EnsureReminderAsync();
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

    private bool Received(string id) =>
        journal.History.Rows.Any(r => r.Kind == JournalKind.SignalReceived && RunPayloads.Read<SignalPayload>(r.Payload).Id == id);
}
