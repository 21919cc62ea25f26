using Spine.Hosting;
using Spine.Journal;
using Spine.Runs;

namespace Spine.Pipeline;

/// <summary>
/// What the stages of the step pipeline see of the run a call belongs to: its journal, its durable waits,
/// its operator escalations and its cancel. The run grain implements it; a test implements it with a list.
/// </summary>
internal interface IStepRun
{
    string RunId { get; }

    /// <summary>The run's workflow type.</summary>
    string WorkflowType { get; }

    /// <summary>Who started the run (its policies apply by that actor's roles); null when no actor was named.</summary>
    Identity.SpineActor? StartedBy { get; }

    /// <summary>The account the run is billed to, if any.</summary>
    string? AccountId { get; }

    /// <summary>The run's own ceilings, as its start asked for (null: none asked).</summary>
    Budgets.RunBudget? Budget { get; }

    /// <summary>Every journaled event of a kind (not outcomes), in journal order per step.</summary>
    IEnumerable<JournalRow> Events(JournalKind kind);

    /// <summary>Every step outcome the journal holds, in no particular order.</summary>
    IEnumerable<JournalRow> Outcomes { get; }

    SpineOptions Options { get; }

    TimeProvider Time { get; }

    /// <summary>Cancelled when the activation ends: nothing after that is the step's outcome.</summary>
    CancellationToken Stopping { get; }

    /// <summary>The journaled events of a step that are not its outcome (attempts, escalations, decisions...), in journal order.</summary>
    IReadOnlyList<JournalRow> EventsOf(int step);

    /// <summary>The step's outcome, when the journal has one.</summary>
    bool TryGetOutcome(int step, out JournalRow row);

    /// <summary>Appends one row and waits until it is durable.</summary>
    Task<JournalRow> AppendAsync(JournalKind kind, int step, string name, bool ok, string? payload, int? attempt = null);

    /// <summary>Appends rows in one commit (all or none) and waits until they are durable.</summary>
    Task<IReadOnlyList<JournalRow>> AppendAsync(IReadOnlyList<PendingRow> rows);

    /// <summary>
    /// Journals <paramref name="row"/> in the commit of its step's next row, right in front of it, instead of in a
    /// commit of its own; lost with the activation when no row of the step follows. For a record whose meaning
    /// holds without it until then (a model call's budget reservation, which the budget grain keeps by key).
    /// </summary>
    void JournalWithNextRow(PendingRow row);

    /// <summary>
    /// Waits, durably (the run's index row backs it), until <paramref name="wakeAt"/>. A retry wait leaves the run
    /// executing; a sleep lets it show as sleeping, a budget pause as awaiting budget.
    /// </summary>
    Task WaitUntilAsync(DateTimeOffset wakeAt, Waits.WaitKind kind = Waits.WaitKind.Retry);

    /// <summary>
    /// Waits for the oldest signal of <paramref name="name"/> no other wait received, until <paramref name="deadline"/>
    /// (null: no deadline); returns its <see cref="JournalKind.SignalReceived"/> row, or null when the deadline
    /// passed. Journals the deadline before waiting when <paramref name="recordDeadline"/>. An <paramref name="approval"/>
    /// wait shows the run as awaiting approval; with <paramref name="closeOnTimeout"/> a passed deadline refuses later
    /// signals of the name.
    /// </summary>
    Task<JournalRow?> AwaitSignalAsync(int step, string name, DateTimeOffset? deadline, bool recordDeadline, bool approval = false, bool closeOnTimeout = false);

    /// <summary>Throws <see cref="Errors.RunCancelledException"/> once a cancel was requested.</summary>
    void ThrowIfCancelRequested();

    /// <summary>The workflow version the run pinned.</summary>
    int WorkflowVersion { get; }

    /// <summary>The run's trace: the parent of every span of its attempts (the same on every activation and silo).</summary>
    System.Diagnostics.ActivityContext Trace { get; }

    /// <summary>Whether a cancel of the run was requested.</summary>
    bool CancelRequested { get; }

    /// <summary>
    /// The token every attempt of the run's calls gets (compensations excepted): signalled when a cancel of the run is
    /// requested, so it reaches a tool, model or step in flight, and when the activation stops (<see cref="Stopping"/>).
    /// </summary>
    CancellationToken Cancelled { get; }

    /// <summary>A live call begins: the run shows as executing while any does (until <see cref="ExitCall"/>).</summary>
    void EnterCall();

    /// <summary>A live call ended.</summary>
    void ExitCall();

    /// <summary>Writes the status the live calls add up to, when it differs from the stored one.</summary>
    Task RefreshStatusAsync();

    /// <summary>Journals the escalation of an exhausted step and waits for an operator's decision on it.</summary>
    Task<OperatorAction> EscalateAsync(JournalKind stepKind, int step, string name, ErrorPayload error, int attempt);

    /// <summary>Waits again for the decision on a step escalated before this activation.</summary>
    Task<OperatorAction> AwaitOperatorAsync(int step);
}
