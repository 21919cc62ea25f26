using System.Text.Json;
using Spine.Journal;
using Spine.Runs;

namespace Spine.Tests.Runs;

/// <summary>The fold of a journal into a run's control state, row by row, without a silo.</summary>
public sealed class RunStateTests
{
    private static readonly DateTimeOffset At = new(2026, 5, 6, 7, 8, 9, TimeSpan.Zero);

    [Fact]
    public void Fold_StepsEscalatedDecidedCompleted_EndsCompletedWithResult()
    {
        var journal = new Journal()
            .Started()
            .Add(JournalKind.Step, 1, "fetch", payload: "1")
            .Add(JournalKind.Tool, 2, "lookup", payload: "2")
            .Escalated(3, "charge", "Tool")
            .Decided(3)
            .Add(JournalKind.Tool, 3, "charge", payload: "3")
            .Add(JournalKind.RunCompleted, null, "completed", payload: "\"done\"");

        var state = journal.Fold();

        Assert.Equal(RunStatus.Completed, state.Status);
        Assert.Equal("\"done\"", state.Result);
        Assert.Empty(state.Escalations);
        Assert.Null(state.Error);
        Assert.Equal(journal.Rows[^1].RecordedAt, state.UpdatedAt);
        Assert.Equal(journal.Rows[0].RecordedAt, state.CreatedAt);
    }

    [Fact]
    public void Fold_Escalated_AwaitsOperatorWithTheStepAndItsKind()
    {
        var state = new Journal().Started().Add(JournalKind.Step, 1, "fetch").Escalated(2, "charge", "Tool").Fold();

        Assert.Equal(RunStatus.AwaitingOperator, state.Status);
        var pending = Assert.Single(state.Escalations);
        Assert.Equal(2, pending.Key);
        Assert.Equal("charge", pending.Value.Escalation.StepName);
        Assert.Equal("transient", pending.Value.Escalation.Error.Kind);
        Assert.Equal(JournalKind.Tool, pending.Value.Kind);
    }

    [Fact]
    public void Fold_TwoParallelEscalationsOneDecided_StillAwaitsOperator()
    {
        var journal = new Journal().Started().Escalated(1, "a", "Step").Escalated(2, "b", "Tool").Decided(1);

        var state = journal.Fold();
        Assert.Equal(RunStatus.AwaitingOperator, state.Status);
        Assert.Equal([2], state.Escalations.Keys);

        Assert.Equal(RunStatus.Running, journal.Decided(2).Fold().Status);
    }

    [Fact]
    public void Fold_CancelRequestedWhileAwaitingOperator_RunsOnWithoutEscalations()
    {
        var journal = new Journal().Started().Escalated(1, "charge", "Tool").Add(JournalKind.CancelRequested, null, "cancel", payload: RunPayloads.Reason("stop"));

        var state = journal.Fold();

        Assert.True(state.CancelRequested);
        Assert.Equal("stop", state.CancelReason);
        Assert.Equal(RunStatus.Running, state.Status);
        Assert.Empty(state.Escalations);
    }

    [Fact]
    public void Fold_EscalatedAfterCancelRequested_IsIgnoredAndTheRunEndsCancelled()
    {
        var journal = new Journal()
            .Started()
            .Add(JournalKind.CancelRequested, null, "cancel", payload: RunPayloads.Reason(null))
            .Escalated(1, "charge", "Tool");
        Assert.Equal(RunStatus.Running, journal.Fold().Status);
        Assert.Empty(journal.Fold().Escalations);

        var state = journal.Add(JournalKind.RunCancelled, null, "cancelled", ok: false, payload: Error("cancelled", "cancelled by the caller")).Fold();

        Assert.Equal(RunStatus.Cancelled, state.Status);
        Assert.Equal("cancelled", state.Error!.Kind);
    }

    [Fact]
    public void Fold_CompensationStarted_CompensatesWithThePlanAndDropsEscalations()
    {
        var plan = new CompensationPlan(RunStatus.Failed, new ErrorPayload("terminal", "card declined", null, Step: 2, StepName: "charge"), DeadLetter: false);
        var journal = new Journal()
            .Started()
            .Add(JournalKind.Step, 1, "reserve")
            .Escalated(2, "charge", "Tool")
            .Add(JournalKind.CompensationStarted, null, "compensation", payload: RunPayloads.Write(plan));

        var state = journal.Fold();

        Assert.Equal(RunStatus.Compensating, state.Status);
        Assert.Empty(state.Escalations);
        Assert.Equal(RunStatus.Failed, state.Compensation!.Status);
        Assert.Equal("card declined", state.Compensation.Error!.Message);

        var failed = journal.Add(JournalKind.Compensated, 1, "release").Add(JournalKind.RunFailed, null, "failed", ok: false, payload: RunPayloads.Write(plan.Error)).Fold();
        Assert.Equal(RunStatus.Failed, failed.Status);
        Assert.Equal(2, failed.Error!.Step);
        Assert.Equal("charge", failed.Error.StepName);
    }

    [Fact]
    public void Fold_DeadLetteredThenDiscarded_EndsDiscarded()
    {
        var journal = new Journal().Started().Add(JournalKind.RunDeadLettered, null, "dead_lettered", ok: false, payload: Error("terminal", "retries exhausted"));
        Assert.Equal(RunStatus.DeadLettered, journal.Fold().Status);

        Assert.Equal(RunStatus.Discarded, journal.Add(JournalKind.RunDiscarded, null, "discarded").Fold().Status);
    }

    [Fact]
    public void Fold_Started_ReadsTheRequest()
    {
        var state = new Journal().Started().Fold();

        Assert.Equal("test.fold", state.WorkflowType);
        Assert.Equal(2, state.WorkflowVersion);
        Assert.Equal("acct", state.AccountId);
        Assert.Equal("key", state.IdempotencyKey);
        Assert.Equal("{\"n\":3}", state.InputJson);
        Assert.Equal(RunStatus.Running, state.Status);
        Assert.False(state.CancelRequested);
    }

    private static string Error(string kind, string message) => RunPayloads.Write(new ErrorPayload(kind, message, null));

    /// <summary>Journal rows in the writer's order; hashes are not the fold's concern.</summary>
    private sealed class Journal
    {
        public List<JournalRow> Rows { get; } = [];

        public Journal Started() => Add(JournalKind.RunStarted, null, "test.fold", payload: RunPayloads.Write(
            new StartedPayload("test.fold", 2, "acct", "key", JsonSerializer.SerializeToElement(new { n = 3 }))));

        public Journal Escalated(int step, string name, string stepKind) => Add(JournalKind.Escalated, step, name, ok: false, payload: RunPayloads.Write(
            new ErrorPayload("transient", "retries exhausted", null, Exhausted: true, Step: step, StepName: name, StepKind: stepKind)));

        public Journal Decided(int step) => Add(JournalKind.OperatorDecided, step, "decided", payload: RunPayloads.Write(new DecisionPayload(OperatorAction.Retry, null, "ops")));

        public Journal Add(JournalKind kind, int? step, string name, bool ok = true, string? payload = null)
        {
            Rows.Add(new JournalRow("run-fold", Rows.Count, kind, step, name, ok, payload, At.AddSeconds(Rows.Count), [], []));
            return this;
        }

        public RunState Fold() => Rows.Aggregate((RunState?)null, RunState.Fold)!;
    }
}
