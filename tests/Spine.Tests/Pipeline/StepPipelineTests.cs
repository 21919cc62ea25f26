using System.Text.Json;
using Spine.Errors;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Recovery;
using Spine.Replay;
using Spine.Runs;
using Spine.Timeouts;
using Spine.Tools;
using Spine.Escalation;
using Spine.Compensation;
using Spine.Workflows;

namespace Spine.Tests.Pipeline;

/// <summary>
/// The step pipeline's stages driven against a fake step and an in-memory run (no silo, no database, no
/// real waiting): what each stage journals, when it waits, and what reaches the workflow.
/// </summary>
public sealed class StepPipelineTests
{
    private static readonly RetryPolicy Backoff = new() { MaxAttempts = 3, InitialDelay = TimeSpan.FromSeconds(1), Multiplier = 2, Jitter = 0 };

    private readonly FakeStepRun _run = new();

    [Fact]
    public async Task TransientFailures_AreRetriedOnTheBackoffSchedule_EachJournaledBeforeItsWait()
    {
        var start = _run.Clock.GetUtcNow();
        var calls = 0;
        var outcome = await Pipeline().RunAsync(Call(_ => ++calls < 3 ? throw new TransientException("busy") : Task.FromResult("42"), Backoff), _run);

        Assert.True(outcome.Ok);
        Assert.Equal("42", outcome.Row!.Payload);
        Assert.Equal(3, outcome.Row.Attempt);
        Assert.Equal(3, calls);
        var failed = _run.Rows(JournalKind.AttemptFailed).ToList();
        Assert.Equal([1, 2], failed.Select(r => r.Attempt!.Value));
        Assert.Equal([start + TimeSpan.FromSeconds(1), start + TimeSpan.FromSeconds(3)], failed.Select(r => RunPayloads.ReadError(r.Payload).RetryAt!.Value));
        Assert.Equal(failed.Select(r => RunPayloads.ReadError(r.Payload).RetryAt!.Value), _run.Waits);
    }

    [Fact]
    public async Task TransientFailures_PastMaxAttempts_EndInAnExhaustedFailure()
    {
        var calls = 0;
        var outcome = await Pipeline().RunAsync(Call(_ => { calls++; throw new TransientException("still busy"); }, Backoff), _run);

        Assert.False(outcome.Ok);
        Assert.Equal(3, calls);
        Assert.True(outcome.Error!.Exhausted);
        Assert.Equal(ErrorClass.Transient.Name(), outcome.Error.Class);
        Assert.Equal(3, outcome.Row!.Attempt);
        Assert.Equal(2, _run.Rows(JournalKind.AttemptFailed).Count());
    }

    [Fact]
    public async Task TerminalFailure_IsNotRetried()
    {
        var calls = 0;
        var outcome = await Pipeline().RunAsync(Call(_ => { calls++; throw new TerminalException("bad request"); }, Backoff), _run);

        Assert.Equal(1, calls);
        Assert.False(outcome.Error!.Exhausted);
        Assert.Empty(_run.Rows(JournalKind.AttemptFailed));
        Assert.Empty(_run.Waits);
    }

    [Fact]
    public async Task OpenBreaker_IsWaitedOutWithOneRowAndNoAttemptOfThePolicyUsed()
    {
        var calls = 0;
        var outcome = await Pipeline().RunAsync(Call(_ => ++calls <= 5
            ? throw new CircuitOpenException("flaky", _run.Clock.GetUtcNow() + TimeSpan.FromSeconds(30))
            : Task.FromResult("\"ok\""), Backoff with { MaxAttempts = 1 }), _run);

        Assert.True(outcome.Ok);
        Assert.Equal(6, calls);
        Assert.Single(_run.Rows(JournalKind.AttemptFailed));
        Assert.Equal(5, _run.Waits.Count);
    }

    [Fact]
    public async Task OpenBreaker_LongerThanMaxCircuitWait_EndsInAnExhaustedFailure()
    {
        var outcome = await Pipeline().RunAsync(Call(_ => throw new CircuitOpenException("down", _run.Clock.GetUtcNow() + TimeSpan.FromMinutes(10)),
            Backoff with { MaxCircuitWait = TimeSpan.FromMinutes(25) }), _run);

        Assert.False(outcome.Ok);
        Assert.True(outcome.Error!.Exhausted);
        Assert.Contains("MaxCircuitWait", outcome.Error.Message, StringComparison.Ordinal);
        Assert.Single(_run.Rows(JournalKind.AttemptFailed));
        Assert.Equal(2, _run.Waits.Count);
    }

    [Fact]
    public async Task JournalFailure_AfterASucceededAttempt_IsNotTheStepsFailure()
    {
        _run.FailAppend = kind => kind == JournalKind.Step ? new StorageUnavailableException("journal append", "connection reset") : null;
        var calls = 0;

        await Assert.ThrowsAsync<StorageUnavailableException>(() => Pipeline().RunAsync(Call(_ => { calls++; return Task.FromResult("1"); }, Backoff), _run));

        // The effect happened once and no attempt is recorded as failed: the run resumes from its journal.
        Assert.Equal(1, calls);
        Assert.Empty(_run.History.Rows);
    }

    [Fact]
    public async Task RecordedCall_IsAnsweredFromTheJournal_WithoutExecuting()
    {
        var recorded = await _run.AppendAsync(JournalKind.Step, 1, "charge", true, "7", 1);

        var outcome = await Pipeline().RunAsync(Call(_ => throw new InvalidOperationException("must not run"), Backoff) with { Recorded = recorded }, _run);

        Assert.Same(recorded, outcome.Row);
        Assert.False(outcome.Executed);
        Assert.Single(_run.History.Rows);
    }

    [Fact]
    public async Task ExhaustedStep_EscalatedTwice_RetriesAfterTheFirstDecisionAndTakesTheSkippedResult()
    {
        var decisions = 0;
        _run.Decide = (run, step) =>
        {
            var action = ++decisions == 1 ? OperatorAction.Retry : OperatorAction.Skip;
            run.Decided(step, "charge", action, JournalKind.Step, outcomeOk: action == OperatorAction.Skip ? true : null);
            return action;
        };
        var calls = 0;

        var outcome = await Pipeline().RunAsync(Call(_ => { calls++; throw new TransientException("busy"); }, Backoff) with { EscalateToOperator = true }, _run);

        Assert.True(outcome.Ok);
        Assert.False(outcome.Executed);
        Assert.Equal(2 * Backoff.MaxAttempts, calls);
        Assert.Equal(2, _run.Rows(JournalKind.Escalated).Count());

        // Attempt numbers run on over the whole step: the retried attempts come after the first escalation.
        Assert.Equal([1, 2, 4, 5], _run.Rows(JournalKind.AttemptFailed).Select(r => r.Attempt!.Value));
    }

    [Fact]
    public async Task Compensation_IsRegisteredOnceBeforeTheFirstAttempt_AcrossRetries()
    {
        var registeredBeforeFirstAttempt = false;
        var calls = 0;
        var call = Call(_ =>
        {
            registeredBeforeFirstAttempt |= calls == 0 && _run.Rows(JournalKind.CompensationRegistered).Any();
            return ++calls < 3 ? throw new TransientException("busy") : Task.FromResult("1");
        }, Backoff) with { Compensation = new CompensationCall("refund", JsonDocument.Parse("{}").RootElement) };

        await Pipeline().RunAsync(call, _run);

        Assert.True(registeredBeforeFirstAttempt);
        Assert.Single(_run.Rows(JournalKind.CompensationRegistered));
    }

    [Fact]
    public async Task ToolAttempt_PastItsTimeout_FailsAsTransientWithAnUnknownOutcome()
    {
        var tool = new RegisteredTool(new SlowTool(TimeSpan.FromSeconds(5)));
        var started = new TaskCompletionSource();
        var call = Call(async attempt =>
        {
            started.TrySetResult();
            await Task.Delay(Timeout.InfiniteTimeSpan, attempt.Cancellation);
            return "1";
        }, RetryPolicy.None);

        var attempt = new StepPipeline([], [new TimeoutStage(_run.Clock)]).AttemptAsync(new StepAttempt(call, 1, CancellationToken.None) { Tool = tool }, _run);
        await started.Task;
        _run.Clock.Advance(TimeSpan.FromSeconds(4));
        Assert.False(attempt.IsCompleted);
        _run.Clock.Advance(TimeSpan.FromSeconds(1));

        var timeout = await Assert.ThrowsAsync<TimeoutException>(() => attempt);
        Assert.Contains("did not answer within 00:00:05", timeout.Message, StringComparison.Ordinal);
        Assert.Equal(ErrorClass.Transient, ErrorClassifier.Classify(timeout));
    }

    [Fact]
    public async Task ToolAttempt_WithATimeoutOfDays_RunsToItsEnd()
    {
        // A long timeout is a bound, not an error: the attempt runs as long as the tool needs below it.
        var tool = new RegisteredTool(new SlowTool(TimeSpan.FromDays(2)));
        var call = Call(_ => Task.FromResult("\"done\""), RetryPolicy.None);

        var payload = await new StepPipeline([], [new TimeoutStage(_run.Clock)]).AttemptAsync(new StepAttempt(call, 1, CancellationToken.None) { Tool = tool }, _run);

        Assert.Equal("\"done\"", payload);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(60 * 24 * 60)]
    public void Tool_WithATimeoutOutOfRange_IsRefusedAtRegistration(int minutes)
    {
        var error = Assert.Throws<InvalidOperationException>(() => new ToolRegistry([new SlowTool(TimeSpan.FromMinutes(minutes))]));
        Assert.Contains("Tool 'slow' 1.0.0 Timeout is", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InstantCall_IsJournaledWithoutAnAttemptAndLeavesTheStatusAlone()
    {
        var live = new LiveCountingStage();
        var pipeline = new StepPipeline([new LiveCallStage(), new ReplayStage(), live, new JournalStage(), new RetryStage()], []);

        var outcome = await pipeline.RunAsync(Call(_ => Task.FromResult("\"2026-01-01\""), RetryPolicy.None) with { Kind = JournalKind.Time, Instant = true }, _run);
        Assert.Null(outcome.Row!.Attempt);
        Assert.Equal(0, live.SeenLive);

        await pipeline.RunAsync(Call(_ => Task.FromResult("1"), RetryPolicy.None) with { Step = 2 }, _run);
        Assert.Equal(1, live.SeenLive);
        Assert.Equal(0, _run.LiveCalls);
    }

    [Fact]
    public async Task LiveCall_AfterTheReplayWasPoisoned_EndsWithTheRunsErrorWithoutExecuting()
    {
        // A parallel branch hit non-determinism after every recorded outcome was handed back: the other
        // branches' next calls must not run their effects in a run that fails anyway.
        var replay = new ReplayOrder(_run.History, timersFire: true);
        replay.Poison(new NonDeterminismException(_run.RunId, 3, "Tool 'a'", "Tool 'b'"));
        var calls = 0;

        await Assert.ThrowsAsync<NonDeterminismException>(() => Pipeline().RunAsync(Call(_ => { calls++; return Task.FromResult("1"); }, Backoff) with { Replay = replay }, _run));

        Assert.Equal(0, calls);
    }

    [Fact]
    public void Stages_SharingAPlace_AreRefused()
    {
        var error = Assert.Throws<InvalidOperationException>(() => new StepPipeline([new JournalStage(), new JournalStage()], []));
        Assert.Contains("share the place", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Stages_RunInTheirPlaces_WhateverTheRegistrationOrder()
    {
        var pipeline = new StepPipeline([new RetryStage(), new JournalStage(), new ReplayStage(), new EscalationStage()], []);
        Assert.Equal(["ReplayStage", "JournalStage", "EscalationStage", "RetryStage"], pipeline.Stages.Select(s => s.GetType().Name));
    }

    private StepPipeline Pipeline() =>
        new([new ReplayStage(), new CompensationStage(new ToolRegistry([])), new JournalStage(), new EscalationStage(), new RetryStage(() => 0.5)], [new TimeoutStage(_run.Clock)]);

    private static StepCall Call(Func<StepAttempt, Task<string>> execute, RetryPolicy retry) => new()
    {
        Kind = JournalKind.Step,
        Step = 1,
        Name = "charge",
        Retry = retry,
        Replay = ReplayOrder.None,
        Execute = execute,
    };

    /// <summary>Records whether each call passing it was counted as live.</summary>
    private sealed class LiveCountingStage : IStepStage
    {
        public int SeenLive { get; private set; }

        public int Order => StepStageOrder.ControlPlane;

        public Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next)
        {
            SeenLive += ((FakeStepRun)run).LiveCalls;
            return next(call, run);
        }
    }

    private sealed class SlowTool(TimeSpan timeout) : ITool
    {
        public ToolDefinition Definition { get; } = new()
        {
            Name = "slow",
            Version = "1.0.0",
            Description = "answers late",
            InputSchema = """{"type":"object"}""",
            OutputSchema = "{}",
            Timeout = timeout,
        };

        public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context) => throw new NotSupportedException();
    }
}
