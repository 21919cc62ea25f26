using Microsoft.Extensions.Time.Testing;
using Spine.Errors;
using Spine.Hosting;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;

namespace Spine.Tests.Pipeline;

/// <summary>
/// A run as the step pipeline's stages see it, kept in memory: a journal list, a fake clock that a wait
/// advances at once, and scripted operator decisions. Lets one stage be driven against a fake step.
/// </summary>
internal sealed class FakeStepRun : IStepRun
{
    private readonly CancellationTokenSource _stopping = new();

    public RunHistory History { get; } = new();

    public string WorkflowType { get; init; } = "test.fake";

    public Spine.Identity.SpineActor? StartedBy { get; init; }

    public string? AccountId { get; init; }

    public Spine.Budgets.RunBudget? Budget { get; init; }

    public IEnumerable<JournalRow> Events(JournalKind kind) => History.Events(kind);

    public IEnumerable<JournalRow> Outcomes => History.Outcomes;

    public FakeTimeProvider Clock { get; } = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public List<DateTimeOffset> Waits { get; } = [];

    public bool CancelRequested { get; set; }

    /// <summary>Throws instead of appending a row of the given kind (a refused or lost write).</summary>
    public Func<JournalKind, Exception?> FailAppend { get; set; } = _ => null;

    /// <summary>What an operator decides on an escalated step (it journals the decision and any outcome itself).</summary>
    public Func<FakeStepRun, int, OperatorAction> Decide { get; set; } = (_, _) => throw new InvalidOperationException("no operator scripted");

    public int LiveCalls { get; private set; }

    public string RunId => "run-1";

    public SpineOptions Options { get; } = new();

    public TimeProvider Time => Clock;

    public CancellationToken Stopping => _stopping.Token;

    public CancellationToken Cancelled => _stopping.Token;

    public int WorkflowVersion => 1;

    public System.Diagnostics.ActivityContext Trace => default;

    public IEnumerable<JournalRow> Rows(JournalKind kind) => History.Rows.Where(r => r.Kind == kind);

    public IReadOnlyList<JournalRow> EventsOf(int step) => History.EventsOf(step);

    public bool TryGetOutcome(int step, out JournalRow row) => History.TryGetOutcome(step, out row);

    /// <summary>Rows waiting for their step's next row, as the run grain's journal keeps them.</summary>
    public Dictionary<int, List<PendingRow>> Deferred { get; } = [];

    public void JournalWithNextRow(PendingRow row)
    {
        if (!Deferred.TryGetValue(row.Step!.Value, out var rows))
        {
            Deferred[row.Step.Value] = rows = [];
        }

        rows.Add(row);
    }

    public Task<JournalRow> AppendAsync(JournalKind kind, int step, string name, bool ok, string? payload, int? attempt = null)
    {
        if (FailAppend(kind) is { } failure)
        {
            throw failure;
        }

        if (Deferred.Remove(step, out var deferred))
        {
            foreach (var early in deferred)
            {
                History.Add(new JournalRow(RunId, History.Rows.Count, early.Kind, step, early.Name, early.Ok, early.Payload, Clock.GetUtcNow(), [], [], early.Attempt));
            }
        }

        var row = new JournalRow(RunId, History.Rows.Count, kind, step, name, ok, payload, Clock.GetUtcNow(), [], [], attempt);
        History.Add(row);
        return Task.FromResult(row);
    }

    public async Task<IReadOnlyList<JournalRow>> AppendAsync(IReadOnlyList<PendingRow> rows)
    {
        var appended = new List<JournalRow>();
        foreach (var row in rows)
        {
            appended.Add(await AppendAsync(row.Kind, row.Step!.Value, row.Name, row.Ok, row.Payload, row.Attempt));
        }

        return appended;
    }

    public Task<JournalRow?> AwaitSignalAsync(int step, string name, DateTimeOffset? deadline, bool recordDeadline, bool approval = false, bool closeOnTimeout = false) =>
        throw new NotSupportedException("The pipeline does not wait for signals.");

    public Task WaitUntilAsync(DateTimeOffset wakeAt, Spine.Waits.WaitKind kind = Spine.Waits.WaitKind.Retry)
    {
        Waits.Add(wakeAt);
        if (wakeAt > Clock.GetUtcNow())
        {
            Clock.SetUtcNow(wakeAt);
        }

        ThrowIfCancelRequested();
        return Task.CompletedTask;
    }

    public void ThrowIfCancelRequested()
    {
        if (CancelRequested)
        {
            throw new RunCancelledException(RunId, "test");
        }
    }

    public void EnterCall() => LiveCalls++;

    public void ExitCall() => LiveCalls--;

    public Task RefreshStatusAsync() => Task.CompletedTask;

    public async Task<OperatorAction> EscalateAsync(JournalKind stepKind, int step, string name, ErrorPayload error, int attempt)
    {
        await AppendAsync(JournalKind.Escalated, step, name, false, RunPayloads.Write(error), attempt);
        return await AwaitOperatorAsync(step);
    }

    public Task<OperatorAction> AwaitOperatorAsync(int step) => Task.FromResult(Decide(this, step));

    /// <summary>Journals an operator's decision on a step, as the run grain does.</summary>
    public void Decided(int step, string name, OperatorAction action, JournalKind outcomeKind = JournalKind.Tool, bool? outcomeOk = null)
    {
        _ = AppendAsync(JournalKind.OperatorDecided, step, name, true, RunPayloads.Write(new DecisionPayload(action, "test", "tester")));
        if (outcomeOk is { } ok)
        {
            _ = AppendAsync(outcomeKind, step, name, ok, ok ? "null" : RunPayloads.Write(new ErrorPayload("operator_failed", "failed by an operator", null)));
        }
    }
}
