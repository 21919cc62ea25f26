using Spine.Journal;

namespace Spine.Runs;

/// <summary>The in-memory control state of a run, rebuilt from its journal.</summary>
internal sealed class RunState
{
    public required string WorkflowType { get; init; }

    public required int WorkflowVersion { get; init; }

    public string? AccountId { get; init; }

    public string? IdempotencyKey { get; init; }

    public required string InputJson { get; init; }

    public IReadOnlyDictionary<string, string>? Parameters { get; init; }

    public RunOrigin? Origin { get; init; }

    public DateTimeOffset CreatedAt { get; init; }

    public DateTimeOffset UpdatedAt { get; set; }

    public RunStatus Status { get; set; }

    public string? Result { get; set; }

    public RunError? Error { get; set; }

    public bool CancelRequested { get; set; }

    public string? CancelReason { get; set; }

    public Escalation? Escalation { get; set; }

    /// <summary>Set once compensation began: how the run ends after it.</summary>
    public CompensationPlan? Compensation { get; set; }

    public RunRow ToRunRow(string runId) => new(
        runId, WorkflowType, WorkflowVersion, AccountId, IdempotencyKey, Status, Result, Error?.Kind, Error?.Message, CreatedAt, UpdatedAt,
        Error?.Step, Error?.StepName, Origin?.SourceRunId);
}

/// <summary>A run's journal with the indexes replay and recovery read: outcomes and events per step.</summary>
internal sealed class RunHistory
{
    private readonly Dictionary<int, JournalRow> _outcomes = [];
    private readonly Dictionary<int, List<JournalRow>> _events = [];

    public List<JournalRow> Rows { get; } = [];

    public int StepsRecorded => _outcomes.Count;

    public void Add(JournalRow row)
    {
        Rows.Add(row);
        if (row.IsStepOutcome)
        {
            _outcomes[row.Step!.Value] = row;
        }
        else if (row.Step is { } step)
        {
            if (!_events.TryGetValue(step, out var list))
            {
                _events[step] = list = [];
            }

            list.Add(row);
        }
    }

    public bool TryGetOutcome(int step, out JournalRow row) => _outcomes.TryGetValue(step, out row!);

    public IReadOnlyList<JournalRow> EventsOf(int step) => _events.TryGetValue(step, out var list) ? list : [];

    public IEnumerable<JournalRow> Outcomes => _outcomes.Values;

    public IEnumerable<JournalRow> Events(JournalKind kind) => _events.Values.SelectMany(v => v).Where(r => r.Kind == kind);

    public int MaxStep => _outcomes.Count == 0 ? 0 : _outcomes.Keys.Max();
}
