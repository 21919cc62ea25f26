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

    /// <summary>Who started the run, when the start named an actor.</summary>
    public Identity.SpineActor? StartedBy { get; init; }

    /// <summary>The run's own ceilings, as its start asked for.</summary>
    public Budgets.RunBudget? Budget { get; init; }

    /// <summary>The journal format the run was started with (see <see cref="StartedPayload.JournalFormat"/>).</summary>
    public int JournalFormat { get; init; } = 1;

    /// <summary>The W3C <c>traceparent</c> of the run's trace (runs started before it was recorded have none).</summary>
    public string? TraceParent { get; init; }

    public DateTimeOffset CreatedAt { get; init; }

    public DateTimeOffset UpdatedAt { get; set; }

    public RunStatus Status { get; set; }

    public string? Result { get; set; }

    public RunError? Error { get; set; }

    public bool CancelRequested { get; set; }

    public string? CancelReason { get; set; }

    /// <summary>
    /// The steps waiting for an operator, by step number, with the journal kind of each (its outcome row,
    /// when an operator skips or fails it, has this kind). Parallel steps may escalate together.
    /// </summary>
    public SortedDictionary<int, PendingEscalation> Escalations { get; } = [];

    /// <summary>The approvals the run waits for, by step number (see <see cref="Spine.Approvals.ApprovalGate"/>).</summary>
    public SortedDictionary<int, Spine.Approvals.ApprovalWait> Approvals { get; } = [];

    /// <summary>Set once compensation began: how the run ends after it.</summary>
    public CompensationPlan? Compensation { get; set; }

    /// <summary>
    /// Applies a row whose effect on the state is the row alone (approvals), both when folding a journal and as
    /// the run appends the row live; everything else a live append changes, its caller sets.
    /// </summary>
    public void Observe(JournalRow row)
    {
        switch (row.Kind)
        {
            case JournalKind.ApprovalRequested or JournalKind.ApprovalEscalated or JournalKind.Approval:
                Spine.Approvals.ApprovalGate.Fold(this, row);
                break;
            case JournalKind.SignalReceived when Spine.Approvals.ApprovalGate.StepOf(row.Name) is { } decided:
                Spine.Approvals.ApprovalGate.FoldDecision(this, decided);
                break;
        }
    }

    /// <summary>The state of a run as its first journal row describes it.</summary>
    public static RunState Started(StartedPayload started, DateTimeOffset at) => new()
    {
        WorkflowType = started.WorkflowType,
        WorkflowVersion = started.WorkflowVersion,
        AccountId = started.AccountId,
        IdempotencyKey = started.IdempotencyKey,
        InputJson = started.Input.GetRawText(),
        Parameters = started.Parameters,
        Origin = started.Origin,
        StartedBy = started.StartedBy,
        Budget = started.Budget,
        TraceParent = started.TraceParent,
        JournalFormat = started.JournalFormat,
        CreatedAt = at,
        UpdatedAt = at,
        Status = RunStatus.Running,
    };

    /// <summary>The state after one more journal row: the one place that reads a journal into control state.</summary>
    public static RunState? Fold(RunState? state, JournalRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        var next = state;
        switch (row.Kind)
        {
            case JournalKind.RunStarted:
                next = Started(RunPayloads.Read<StartedPayload>(row.Payload), row.RecordedAt);
                break;
            case JournalKind.CancelRequested:
                state!.CancelRequested = true;
                state.CancelReason = RunPayloads.ReadReason(row.Payload);
                if (state.Status == RunStatus.AwaitingOperator)
                {
                    // A cancel ends every wait for an operator: the run executes towards its end.
                    state.Status = RunStatus.Running;
                }

                state.Escalations.Clear();
                state.Approvals.Clear();
                break;
            case JournalKind.ApprovalRequested or JournalKind.ApprovalEscalated or JournalKind.Approval or JournalKind.SignalReceived:
                state!.Observe(row);
                break;
            case JournalKind.Escalated when state!.CancelRequested:
                // Written by an attempt that ended after the cancel: the run is on its way to its end.
                break;
            case JournalKind.Escalated:
                var escalated = RunPayloads.ReadError(row.Payload);
                state!.Status = RunStatus.AwaitingOperator;
                state.Escalations[row.Step!.Value] = new PendingEscalation(
                    new Escalation(row.Step.Value, row.Name, escalated.ToRunError()),
                    Enum.TryParse<JournalKind>(escalated.StepKind, out var kind) ? kind : JournalKind.Step);
                break;
            case JournalKind.OperatorDecided:
                state!.Escalations.Remove(row.Step!.Value);
                state.Status = state.Escalations.Count > 0 ? RunStatus.AwaitingOperator : RunStatus.Running;
                break;
            case JournalKind.CompensationStarted:
                state!.Compensation = RunPayloads.Read<CompensationPlan>(row.Payload);
                state.Status = RunStatus.Compensating;
                state.Escalations.Clear();
                state.Approvals.Clear();
                break;
            case JournalKind.RunCompleted:
                state!.Status = RunStatus.Completed;
                state.Result = row.Payload;
                break;
            case JournalKind.RunFailed or JournalKind.RunCancelled or JournalKind.RunDeadLettered:
                state!.Status = row.Kind switch
                {
                    JournalKind.RunFailed => RunStatus.Failed,
                    JournalKind.RunCancelled => RunStatus.Cancelled,
                    _ => RunStatus.DeadLettered,
                };
                state.Error = RunPayloads.ReadError(row.Payload).ToRunError();
                state.Escalations.Clear();
                state.Approvals.Clear();
                break;
            case JournalKind.RunDiscarded:
                state!.Status = RunStatus.Discarded;
                break;
        }

        if (next is not null)
        {
            next.UpdatedAt = row.RecordedAt;
        }

        return next;
    }

    /// <summary>What a second start of this run asks differently from its first (null: the same request).</summary>
    public string? DifferenceFrom(StartRunRequest request)
    {
        if (!string.Equals(request.WorkflowType, WorkflowType, StringComparison.Ordinal))
        {
            return $"workflow type '{request.WorkflowType}', not '{WorkflowType}'";
        }

        if (request.WorkflowVersion is { } version && version != WorkflowVersion)
        {
            return $"workflow version {version}, not {WorkflowVersion}";
        }

        if (!SameJson(request.InputJson, InputJson))
        {
            return "input";
        }

        if (!SameParameters(request.Parameters))
        {
            return "parameters";
        }

        return Equals(request.Budget, Budget) ? null : "budget";
    }

    /// <summary>What a second replay request for this run asks differently from the one that started it (null: the same).</summary>
    public string? DifferenceFrom(ReplayRequest request)
    {
        if (Origin is null || !string.Equals(Origin.SourceRunId, request.SourceRunId, StringComparison.Ordinal))
        {
            return $"a replay of run '{request.SourceRunId}', not of '{Origin?.SourceRunId ?? "(no source: a started run)"}'";
        }

        if (request.FromStep is { } from && from != Origin.FromStep)
        {
            return $"from step {from}, not {Origin.FromStep}";
        }

        if (request.InputJson is { } input && !SameJson(input, InputJson))
        {
            return "input";
        }

        return request.Parameters is null || SameParameters(request.Parameters) ? null : "parameters";
    }

    private bool SameParameters(IReadOnlyDictionary<string, string>? other)
    {
        var mine = Parameters ?? new Dictionary<string, string>();
        other ??= new Dictionary<string, string>();
        return mine.Count == other.Count && mine.All(p => other.TryGetValue(p.Key, out var v) && v == p.Value);
    }

    private static bool SameJson(string a, string b)
    {
        try
        {
            using var left = System.Text.Json.JsonDocument.Parse(a);
            using var right = System.Text.Json.JsonDocument.Parse(b);
            return System.Text.Json.JsonElement.DeepEquals(left.RootElement, right.RootElement);
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
    }

    public RunRow ToRunRow(string runId) => new(
        runId, WorkflowType, WorkflowVersion, AccountId, IdempotencyKey, Status, Result, Error?.Kind, RunPayloads.Clean(Error?.Message), CreatedAt, UpdatedAt,
        Error?.Step, RunPayloads.Clean(Error?.StepName), Origin?.SourceRunId);
}

/// <summary>A step waiting for an operator, and the journal kind of its outcome row.</summary>
internal sealed record PendingEscalation(Escalation Escalation, JournalKind Kind);
