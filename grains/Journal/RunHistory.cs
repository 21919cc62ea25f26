namespace Spine.Journal;

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
