using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Spine.Audit;
using Spine.Compensation;
using Spine.Errors;
using Spine.Escalation;
using Spine.Hosting;
using Spine.Identity;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Replay;
using Spine.Storage;
using Spine.Tools;
using Spine.Waits;
using Spine.Workflows;

namespace Spine.Runs;

/// <summary>
/// One workflow run. Its journal in PostgreSQL is its state: on activation the grain reads it back and,
/// when the run is unfinished, re-executes the workflow, which the journal answers up to the first
/// unrecorded step. After a silo dies, the recovery sweep brings executing runs back, and the reminder
/// every wait registers brings waiting runs back when their wait is due.
/// </summary>
/// <remarks>
/// The grain ties together the run's journal (<see cref="RunJournal"/>), its durable waits
/// (<see cref="DurableWaits"/>), its operator decisions (<see cref="OperatorDecisions"/>) and its
/// compensator (<see cref="Compensator"/>); every context call goes through the step pipeline
/// (<see cref="StepPipeline"/>), which sees the run as an <see cref="IStepRun"/>.
/// </remarks>
/// <remarks>
/// Placed at random: the recovery sweep activates a dead silo's runs from one silo, and the default placement
/// prefers the caller's silo, which landed every orphaned run on the sweep's silo.
/// </remarks>
[Orleans.Placement.RandomPlacement]
public sealed partial class WorkflowRunGrain : Grain, IWorkflowRunGrain, IRemindable, IStepRun
{
    internal const string ResumeReminderName = "spine.resume";

    private readonly WorkflowRegistry _workflows;
    private readonly ToolRegistry _tools;
    private readonly StepPipeline _pipeline;
    private readonly JournalStore _store;
    private readonly JournalAudit _audit;
    private readonly StorageRetry _storage;
    private readonly ILogger<WorkflowRunGrain> _logger;
    private readonly CancellationTokenSource _shutdown = new();

    // Fired by a cancel of the run, and with _shutdown: the token of every attempt of its calls (compensations excepted).
    private readonly CancellationTokenSource _cancelled;

    private System.Diagnostics.ActivityContext? _trace;
    private readonly TaskCompletionSource _terminal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly RunJournal _journal;
    private readonly DurableWaits _waits;
    private readonly OperatorDecisions _decisions;
    private readonly Signals.SignalInbox _signals;
    private Task? _execution;
    private int _liveCalls;

    /// <summary>Created by Orleans.</summary>
    public WorkflowRunGrain(
        WorkflowRegistry workflows,
        ToolRegistry tools,
        StepPipeline pipeline,
        JournalWriter writer,
        JournalStore store,
        JournalAudit audit,
        StorageRetry storage,
        IOptions<SpineOptions> options,
        TimeProvider time,
        IServiceProvider services,
        ILogger<WorkflowRunGrain> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _workflows = workflows;
        _tools = tools;
        _pipeline = pipeline;
        _store = store;
        _storage = storage;
        Options = options.Value;
        Time = time;
        Services = services;
        _logger = logger;
        _audit = audit;
        _cancelled = CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token);
        _journal = new RunJournal(RunId, writer, store, audit, storage, time, _shutdown.Token, DeactivateOnIdle);
        _waits = new DurableWaits(this, time, _shutdown.Token);
        _journal.WakeSource = () => _waits.EarliestWake;
        _decisions = new OperatorDecisions(_shutdown.Token);
        _signals = new Signals.SignalInbox(RunId, _journal, _waits, Options, time, _shutdown.Token);
    }

    internal string RunId => this.GetPrimaryKeyString();

    internal SpineOptions Options { get; }

    internal TimeProvider Time { get; }

    internal IServiceProvider Services { get; }

    private RunState? State => _journal.State;

    private RunHistory History => _journal.History;

    /// <inheritdoc />
    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (!await _journal.LoadAsync(cancellationToken))
        {
            return;
        }

        if (_journal.Tampered is { } tampered)
        {
            await QuarantineAsync(tampered);
            return;
        }

        var state = State!;
        if (state.Status.IsTerminal())
        {
            // The final rows commit with the final index row; restating it repairs an index that a refused or
            // lost write left behind (a finished status always wins over an unfinished one).
            await _journal.WriteAsync([], state.ToRunRow(RunId));
            _terminal.TrySetResult();
            ScheduleIdleDeactivation();
            return;
        }

        // A status written without a journal row (sleeping) may be stale after a crash: this activation is now
        // the newest writer of the index, so it states the status its journal folds to, stamped now. The
        // index refuses it if the run finished meanwhile (a finished status is final).
        state.UpdatedAt = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        await _journal.WriteAsync([], state.ToRunRow(RunId));
        LogResuming(_logger, RunId, History.StepsRecorded);
        StartExecution();
    }

    /// <summary>
    /// A run whose journal, head anchor and index disagree never executes: replaying it would repeat side effects
    /// its missing rows recorded, or act on rows someone forged. Its index says so (unless it shows the run
    /// finished, which is final) and every call that would change it is refused.
    /// </summary>
    private async Task QuarantineAsync(JournalVerification tampered)
    {
        LogQuarantined(_logger, RunId, tampered.FirstBadSeq, tampered.Problem);
        if (State is not null)
        {
            try
            {
                await _journal.QuarantineAsync();
            }
            catch (Exception e) when (e is StorageUnavailableException or OperationCanceledException)
            {
                // The run stays quarantined in this activation; the next one verifies and tries again.
                LogQuarantineNotRecorded(_logger, RunId, e.Message);
            }
        }

        _terminal.TrySetResult();
        ScheduleIdleDeactivation();
    }

    /// <inheritdoc />
    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _shutdown.Cancel();
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<RunInfo> StartAsync(StartRunRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return BeginAsync(request, null, []);
    }

    /// <inheritdoc />
    public Task<RunInfo> GetInfoAsync() => Task.FromResult(Info());

    /// <inheritdoc />
    public Task<RunInfo> ResumeAsync()
    {
        var info = Info();
        StartExecution();
        return Task.FromResult(info);
    }

    /// <inheritdoc />
    public async Task<RunInfo> WaitAsync(TimeSpan timeout)
    {
        var info = Info();
        if (info.Status.IsTerminal())
        {
            return info;
        }

        try
        {
            await _terminal.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
        }

        return Info();
    }

    /// <inheritdoc />
    public async Task<RunInfo> WaitForStatusAsync(RunStatus status, TimeSpan timeout)
    {
        // A client waits in slices well below this; a direct caller's longer (or infinite) timeout is cut to it.
        var deadline = Time.GetUtcNow() + (timeout < MaxStatusWait ? timeout : MaxStatusWait);
        while (true)
        {
            var info = Info();
            var left = deadline - Time.GetUtcNow();
            if (info.Status == status || info.Status.IsTerminal() || left <= TimeSpan.Zero || _shutdown.IsCancellationRequested)
            {
                return info;
            }

            try
            {
                // The activation ending answers too: the caller asks again, of the next one.
                await _journal.Changes.Next.WaitAsync(left, Time, _shutdown.Token);
            }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException)
            {
                return Info();
            }
        }
    }

    /// <summary>The longest one <see cref="WaitForStatusAsync"/> call waits.</summary>
    private static readonly TimeSpan MaxStatusWait = TimeSpan.FromMinutes(10);

    /// <inheritdoc />
    public async Task<RunInfo> CancelAsync(string? reason, SpineActor? actor)
    {
        actor?.Check();
        var state = State ?? throw new RunNotFoundException(RunId);
        if (state.Status.IsTerminal() || state.CancelRequested || state.Compensation is not null)
        {
            return Info();
        }

        // Set before the await so a second cancel interleaving here does not journal twice.
        state.CancelRequested = true;
        state.CancelReason = reason;
        var request = new PendingRow(JournalKind.CancelRequested, null, "CancelRequested", true, RunPayloads.Reason(reason, actor), null);
        try
        {
            // The run is executing from here on (towards its end): the index says so in the same commit, or a
            // crash would leave a sleeping or escalated run where the recovery sweep does not look. Always, not
            // only when the run shows as sleeping or escalated now: an escalation committing at this moment
            // (queued before this commit) has just written AwaitingOperator.
            await _journal.TransitionAsync([request], RunStatus.Running);
        }
        catch
        {
            state.CancelRequested = false;
            state.CancelReason = null;
            throw;
        }

        // Every waiter wakes: sleeps, retry waits and signal waits see the cancel, escalations end with it.
        _waits.WakeAll();
        _signals.WakeAll();
        _decisions.FailAll(new RunCancelledException(RunId, reason));
        state.Escalations.Clear();
        state.Approvals.Clear();
        StartExecution();

        // Every call in flight sees it through its token. A callback the call registered may throw: the cancel is
        // journaled and the waiters woken whatever it does.
        try
        {
            await _cancelled.CancelAsync();
        }
        catch (Exception e)
        {
            LogCancelCallbackFailed(_logger, RunId, e);
        }

        return Info();
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<JournalEntryView>> GetJournalAsync()
    {
        if (State is null)
        {
            throw new RunNotFoundException(RunId);
        }

        return Task.FromResult<IReadOnlyList<JournalEntryView>>(History.Rows.Select(r => r.ToView()).ToList());
    }

    /// <inheritdoc />
    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        if (reminderName != ResumeReminderName)
        {
            return;
        }

        // Runs wait without reminders now (the index row's wake-up time brings them back): this one is a reminder an
        // earlier version of Spine registered for a wait. It resumes the run once, as it would have, and is removed.
        if (await this.GetReminder(ResumeReminderName) is { } reminder)
        {
            await this.UnregisterReminder(reminder);
        }

        if (State is not null && !State.Status.IsTerminal())
        {
            StartExecution();
        }
    }

    string IStepRun.RunId => RunId;

    string IStepRun.WorkflowType => State!.WorkflowType;

    SpineActor? IStepRun.StartedBy => State!.StartedBy;

    string? IStepRun.AccountId => State!.AccountId;

    Budgets.RunBudget? IStepRun.Budget => State!.Budget;

    IEnumerable<JournalRow> IStepRun.Events(JournalKind kind) => History.Events(kind);

    IEnumerable<JournalRow> IStepRun.Outcomes => History.Outcomes;

    SpineOptions IStepRun.Options => Options;

    TimeProvider IStepRun.Time => Time;

    CancellationToken IStepRun.Stopping => _shutdown.Token;

    CancellationToken IStepRun.Cancelled => _cancelled.Token;

    bool IStepRun.CancelRequested => State is { CancelRequested: true };

    int IStepRun.WorkflowVersion => State!.WorkflowVersion;

    System.Diagnostics.ActivityContext IStepRun.Trace => _trace ??= Telemetry.SpineTelemetry.Parse(State?.TraceParent);

    IReadOnlyList<JournalRow> IStepRun.EventsOf(int step) => History.EventsOf(step);

    bool IStepRun.TryGetOutcome(int step, out JournalRow row) => History.TryGetOutcome(step, out row);

    Task<JournalRow> IStepRun.AppendAsync(JournalKind kind, int step, string name, bool ok, string? payload, int? attempt) =>
        _journal.AppendAsync(kind, step, name, ok, payload, attempt: attempt);

    Task<IReadOnlyList<JournalRow>> IStepRun.AppendAsync(IReadOnlyList<PendingRow> rows) => _journal.WriteAsync(rows, null);

    void IStepRun.JournalWithNextRow(PendingRow row) => _journal.Defer(row);

    Task IStepRun.WaitUntilAsync(DateTimeOffset wakeAt, WaitKind kind) => WaitUntilAsync(wakeAt, kind);

    Task<JournalRow?> IStepRun.AwaitSignalAsync(int step, string name, DateTimeOffset? deadline, bool recordDeadline, bool approval, bool closeOnTimeout) =>
        _signals.AwaitAsync(step, name, deadline, recordDeadline, approval, closeOnTimeout, RefreshStatusAsync, ThrowIfCancelRequested);

    void IStepRun.ThrowIfCancelRequested() => ThrowIfCancelRequested();

    void IStepRun.EnterCall() => _liveCalls++;

    void IStepRun.ExitCall() => _liveCalls--;

    Task IStepRun.RefreshStatusAsync() => RefreshStatusAsync();

    Task<OperatorAction> IStepRun.EscalateAsync(JournalKind stepKind, int step, string name, ErrorPayload error, int attempt) =>
        EscalateAsync(stepKind, step, name, error, attempt);

    Task<OperatorAction> IStepRun.AwaitOperatorAsync(int step) => AwaitOperatorAsync(step);

    internal void ThrowIfCancelRequested()
    {
        // Checked before every attempt: once the journal refused this run's rows as not continuing its head, no
        // further side effect runs, even if the workflow catches the refusal.
        _journal.ThrowIfTampered();
        if (State is { CancelRequested: true } state)
        {
            throw new RunCancelledException(RunId, state.CancelReason);
        }
    }

    /// <summary>
    /// Waits until <paramref name="wakeAt"/> (see <see cref="DurableWaits"/>). A sleep counts towards the run showing
    /// as <see cref="RunStatus.Sleeping"/>, a budget pause as <see cref="RunStatus.AwaitingBudget"/>; a retry wait
    /// leaves the run executing. A compensating run's waits are not cut short by a cancel.
    /// </summary>
    internal async Task WaitUntilAsync(DateTimeOffset wakeAt, WaitKind kind)
    {
        if (wakeAt - Time.GetUtcNow() <= TimeSpan.Zero)
        {
            return;
        }

        var cancellable = State!.Compensation is null;

        // The wait is a span of the run's trace (a retry's backoff, a sleep, a budget pause), as long as it lasts here.
        // (A run from before traces were recorded has no trace of its own to put it in.)
        var trace = ((IStepRun)this).Trace;
        using var span = trace != default && Telemetry.SpineTelemetry.Source.HasListeners()
            ? Telemetry.SpineTelemetry.Source.StartActivity($"wait {kind}", System.Diagnostics.ActivityKind.Internal, trace)
            : null;
        span?.SetTag("spine.run.id", RunId);
        span?.SetTag("spine.wait.kind", kind.ToString());
        span?.SetTag("spine.wait.until", wakeAt.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
        using (var wait = _waits.Register(wakeAt, kind))
        {
            if (cancellable)
            {
                ThrowIfCancelRequested();
            }

            // The index row that says the run waits carries the wait's time, for the recovery sweep: if it fails,
            // the run still shows as executing and the sweep resumes it. (A retry's backoff leaves a run executing
            // and writes nothing, unless the run showed as waiting.)
            await RefreshStatusAsync();
            await wait.ElapsedAsync();
            if (cancellable)
            {
                ThrowIfCancelRequested();
            }
        }

        await RefreshStatusAsync();
    }

    /// <summary>
    /// The status the run's live calls add up to: executing while any call executes (or waits for a retry),
    /// else waiting for an operator while any step is escalated, else for an approval or a signal while any
    /// call waits for one, else sleeping while any call sleeps.
    /// </summary>
    private RunStatus LiveStatus(int escalated) =>
        _liveCalls > _waits.Sleeping + _waits.PausedForBudget + escalated + _signals.Waiting + _signals.WaitingForApproval ? RunStatus.Running
        : escalated > 0 ? RunStatus.AwaitingOperator
        : _signals.WaitingForApproval > 0 ? RunStatus.AwaitingApproval
        : _waits.PausedForBudget > 0 ? RunStatus.AwaitingBudget
        : _signals.Waiting > 0 ? RunStatus.AwaitingSignal
        : _waits.Sleeping > 0 ? RunStatus.Sleeping
        : RunStatus.Running;

    /// <summary>
    /// An executing run is never collected as idle (a long step must not be cancelled and run again); one that
    /// only sleeps or waits for an operator or a signal may be, since the recovery sweep (by the index row's
    /// wake-up time), the decision or the signal brings it back; but not once its wait is due before the sweep
    /// could bring it back again (<see cref="RunRecoveryGrain.WakeHorizon"/>).
    /// </summary>
    private void KeepAliveWhile(RunStatus live)
    {
        if (live is not (RunStatus.Sleeping or RunStatus.AwaitingOperator or RunStatus.AwaitingSignal or RunStatus.AwaitingApproval or RunStatus.AwaitingBudget))
        {
            DelayDeactivation(TimeSpan.MaxValue);
            return;
        }

        var left = _waits.EarliestWake - Time.GetUtcNow();
        DelayDeactivation(left is { } due && due <= RunRecoveryGrain.WakeHorizon(Options.ResumeReminderPeriod) ? due + TimeSpan.FromSeconds(1) : TimeSpan.Zero);
    }

    /// <summary>Writes the status the live calls add up to, when it differs from the stored one (no write on a step's hot path).</summary>
    internal async Task RefreshStatusAsync()
    {
        var state = State!;
        if (state.Compensation is not null || state.Status is not (RunStatus.Running or RunStatus.Sleeping or RunStatus.AwaitingOperator or RunStatus.AwaitingSignal or RunStatus.AwaitingApproval or RunStatus.AwaitingBudget))
        {
            return;
        }

        var live = LiveStatus(state.Escalations.Count);
        if (live != RunStatus.Running && live != _journal.IndexedStatus)
        {
            // About to show as waiting, where the recovery sweep does not look: what the stages owe for the run is
            // settled first (the index still says it executes meanwhile).
            await _pipeline.IdlingAsync(this);
            live = LiveStatus(state.Escalations.Count);
        }

        KeepAliveWhile(live);

        // Against the index too: a write of another status (a decision's, a signal's) may have committed before an
        // earlier refresh's, which then left the index behind what this activation believes it says. A waiting run's
        // row also carries when its earliest wait is due (a new wait, an escalation's deadline): the sweep reads it.
        var wakeMoved = live is not RunStatus.Running && live != RunStatus.AwaitingOperator && _waits.EarliestWake != _journal.IndexedWakeAt;
        if (live != state.Status || live != _journal.IndexedStatus || wakeMoved)
        {
            // Set before the write, so that calls refreshing meanwhile do not write it again. No journal row
            // goes with it: a stale status after a crash is restated by the next activation.
            state.Status = live;
            state.UpdatedAt = JournalHash.ToStoredPrecision(Time.GetUtcNow());
            _journal.Changes.Pulse();
            await _journal.WriteAsync([], state.ToRunRow(RunId));
        }
    }

    /// <summary>How long a start keeps trying to commit before it answers that its outcome is unknown (below Orleans' 30 s call timeout).</summary>
    internal static readonly TimeSpan StartConfirmTimeout = TimeSpan.FromSeconds(20);

    /// <summary>The journal format new runs are written in (see <see cref="StartedPayload.JournalFormat"/>).</summary>
    internal const int CurrentJournalFormat = 2;

    private async Task<RunInfo> BeginAsync(StartRunRequest request, RunOrigin? origin, IReadOnlyList<JournalRow> reused, int journalFormat = CurrentJournalFormat)
    {
        // Rows of this run id were deleted, or forged: a start must not write a fresh history over the gap.
        _journal.ThrowIfTampered();
        if (State is { } existing)
        {
            // A second start of the same run id: the same request gets the run; a different one is refused.
            if (origin is null && existing.DifferenceFrom(request) is { } difference)
            {
                throw new IdempotencyKeyConflictException(RunId, existing.IdempotencyKey, difference);
            }

            return Info();
        }

        RunIds.CheckIdentifier(request.AccountId, "account id");
        RunIds.CheckIdentifier(request.IdempotencyKey, "idempotency key");
        request.Actor?.Check();
        var registration = _workflows.Resolve(request.WorkflowType, request.WorkflowVersion);
        var input = RunPayloads.CheckJson(request.InputJson, $"input of workflow '{registration.Name}'", Options.MaxPayloadBytes);
        registration.ParseInput(request.InputJson);

        // No reminder here: the index row committed with the start says the run is executing, and the
        // recovery sweep (RunRecoveryGrain) resumes every such run whose silo died.
        if (request.Budget is { MaxTokens: < 0 } or { MaxCost: < 0 })
        {
            throw new InvalidPayloadException($"budget of run {RunId}", "a ceiling may not be negative (leave it out for none)");
        }

        // The run's one trace: a span for its start (in the caller's trace when the call came with one, and sampled as
        // the tracer decides), whose context every span of the run has as its parent.
        using var root = Telemetry.SpineTelemetry.Source.StartActivity($"run {registration.Name}");
        root?.SetTag("spine.run.id", RunId);
        root?.SetTag("spine.workflow.type", registration.Name);
        var trace = root?.Id
            ?? (System.Diagnostics.Activity.Current is { IdFormat: System.Diagnostics.ActivityIdFormat.W3C } current ? current.Id : Telemetry.SpineTelemetry.NewTraceParent());
        var started = new StartedPayload(registration.Name, registration.Version, request.AccountId, request.IdempotencyKey, input, request.Parameters, origin, journalFormat, request.Actor, request.Budget, trace);
        var state = RunState.Started(started, JournalHash.ToStoredPrecision(Time.GetUtcNow()));
        var rows = new List<PendingRow> { new(JournalKind.RunStarted, null, "RunStarted", true, RunPayloads.Write(started), null) };
        rows.AddRange(reused.Select(r => new PendingRow(r.Kind, r.Step, r.Name, r.Ok, r.Payload, r.Attempt)));
        try
        {
            // The start and the rows a replay reuses commit together: a replay is never half-copied. It is tried
            // for a bounded time, inside the caller's call timeout, so that the caller hears back either way.
            using var deadline = new CancellationTokenSource(StartConfirmTimeout, Time);
            await _journal.StartAsync(state, rows, deadline.Token);
        }
        catch (OperationCanceledException e)
        {
            // PostgreSQL stayed unreachable (or the silo is stopping): whether the start landed is unknown here,
            // and this activation has stepped aside. Starting the same run id again is safe: the next
            // activation reads the journal and either returns the run or starts it.
            throw new StorageUnavailableException("run start", $"the start of run {RunId} could not be confirmed within {StartConfirmTimeout.TotalSeconds:0} s; start the same run id again", e);
        }
        catch (JournalConflictException)
        {
            // Another activation started this run id first: the next call reads its journal.
            throw new StorageUnavailableException("run start", $"run {RunId} was started concurrently elsewhere; start the same run id again to get it");
        }

        // The start is durable (confirmed by reading back when its acknowledgement was lost).
        LogStarted(_logger, RunId, state.WorkflowType, state.WorkflowVersion);
        Telemetry.SpineTelemetry.RunsStarted.Add(1, new KeyValuePair<string, object?>("spine.workflow.type", state.WorkflowType));
        StartExecution();
        return Info();
    }

    private void StartExecution()
    {
        if (_execution is { IsCompleted: false } || State is null || State.Status.IsTerminal())
        {
            return;
        }

        // An executing run is never collected as idle: a step may run far longer than Orleans' collection age
        // with no call reaching the grain, and collecting it would cancel the step and run it again.
        DelayDeactivation(TimeSpan.MaxValue);
        _execution = ExecuteAsync();
    }

    private async Task ExecuteAsync()
    {
        // Every grain call the workflow, its tools or its model client make carries the run: an approval decision
        // arriving with it comes from inside a run, and is refused (see ApprovalGate.Authorize).
        RequestContext.Set(Approvals.ApprovalGate.CallerRunKey, RunId);
        var state = State!;
        try
        {
            if (state.Compensation is { } plan)
            {
                // The workflow already ended; only its compensations were left when the silo stopped.
                await EndAsync(plan.Status, null, plan.Error, plan.DeadLetter);
                return;
            }

            WorkflowRegistration registration;
            try
            {
                registration = _workflows.Resolve(state.WorkflowType, state.WorkflowVersion);
            }
            catch (UnknownWorkflowException e)
            {
                // A silo without this workflow version (a rolling deploy): leave the run for one that has it;
                // the next sweep activates it again, possibly elsewhere.
                LogCannotResume(_logger, e, RunId);
                DeactivateOnIdle();
                return;
            }

            // Each execution replays the journal from its start, in journal order.
            var replay = new ReplayOrder(History, state.JournalFormat >= 2);
            var context = new WorkflowContext(this, _pipeline, replay, registration, state, _tools, Services);
            // Controls that keep state outside the run (budgets) square it with the journal first.
            await _pipeline.ExecutingAsync(this);
            string output;
            try
            {
                var input = registration.ParseInput(state.InputJson);
                output = await registration.Invoke(Services, context, input);
                RunPayloads.CheckSize(output, $"result of run {RunId}", Options.MaxPayloadBytes);
            }
            catch (Exception) when (_shutdown.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is StorageUnavailableException or JournalConflictException or JournalTamperedException)
            {
                throw;
            }
            catch (RunCancelledException e)
            {
                await EndAsync(RunStatus.Cancelled, null, new ErrorPayload(e.Kind, e.Message, null, ErrorClass.Cancelled.Name()), false);
                return;
            }
            catch (StepFailedException e)
            {
                var error = new ErrorPayload(e.ErrorKind, e.Message, e.ExceptionType, e.ErrorClass, Step: e.Step, StepName: e.StepName);
                await EndAsync(RunStatus.Failed, null, error, deadLetter: e.RetriesExhausted);
                return;
            }
            catch (Exception e)
            {
                await EndAsync(RunStatus.Failed, null, ErrorFrom(e), false);
                return;
            }

            await EndAsync(RunStatus.Completed, output, null, false);
        }
        catch (Exception) when (_shutdown.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is StorageUnavailableException or JournalConflictException or JournalTamperedException)
        {
            if (e is StorageUnavailableException { IsTransient: false } refused && RefusesThisData(refused) && await TryDeadLetterRefusedAsync(refused))
            {
                return;
            }

            // Nothing after the last durable row happened as far as the run is concerned: step aside,
            // and let the recovery sweep (or a wait reminder) resume the run from its journal.
            LogSuspended(_logger, e, RunId);
            DeactivateOnIdle();
        }
    }

    /// <summary>
    /// Whether the refusal is about the data written (SQLSTATE classes 22 and 23, or a value the driver could
    /// not encode), so that writing it again can never succeed. Anything else (a missing grant, a dropped
    /// table) is an operator's to fix, and the run waits for the sweep meanwhile.
    /// </summary>
    private static bool RefusesThisData(StorageUnavailableException refused) => refused.Cause switch
    {
        Npgsql.PostgresException pg => pg.SqlState.StartsWith("22", StringComparison.Ordinal) || pg.SqlState.StartsWith("23", StringComparison.Ordinal),
        Npgsql.NpgsqlException => false,
        null => false,
        _ => true,
    };

    /// <summary>
    /// PostgreSQL refused one of the run's writes for good (not an outage: the same write would be refused
    /// again, and resuming would repeat the step's effect on every sweep). The run is dead-lettered without
    /// compensating, since the refused row may be the outcome of a step whose effect happened: an operator
    /// fixes the cause and replays it. Returns false when even that write is refused.
    /// </summary>
    private async Task<bool> TryDeadLetterRefusedAsync(StorageUnavailableException refused)
    {
        LogRefused(_logger, refused, RunId);
        try
        {
            var message = $"Run {RunId}: PostgreSQL refused a journal write for good ({refused.Detail}); the run was dead-lettered without compensating, " +
                "since the refused row may be the outcome of a step whose effect happened. Fix the cause, then replay the run.";
            await FinishAsync(RunStatus.DeadLettered, null, new RunError("journal_refused", RunPayloads.Clean(message)));
            return true;
        }
        catch (Exception e) when (e is StorageUnavailableException or JournalConflictException or JournalTamperedException or OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Ends the run: compensations first when it did not complete, then the final row.</summary>
    private async Task EndAsync(RunStatus status, string? result, ErrorPayload? error, bool deadLetter)
    {
        // The workflow is done: a signal from now on would only be journaled after the run's last row.
        _signals.Close();
        var state = State!;
        var compensator = new Compensator(this, History, _pipeline, _tools, Services.GetRequiredService<Secrets.SecretfulInvoker>());
        if (status != RunStatus.Completed && compensator.Pending().Any())
        {
            if (state.Compensation is null)
            {
                var plan = new CompensationPlan(status, error, deadLetter);
                await _journal.TransitionAsync([new(JournalKind.CompensationStarted, null, "CompensationStarted", true, RunPayloads.Write(plan), null)], RunStatus.Compensating,
                    apply: s =>
                    {
                        s.Compensation = plan;
                        s.Approvals.Clear();
                    });
            }

            var failure = await compensator.CompensateAsync();
            if (failure is not null)
            {
                status = RunStatus.DeadLettered;
                error = failure;
            }
        }

        if (status == RunStatus.Failed && deadLetter)
        {
            status = RunStatus.DeadLettered;
        }

        await FinishAsync(status, result, error?.ToRunError());
    }

    private async Task FinishAsync(RunStatus status, string? result, RunError? error)
    {
        _signals.Close();
        var state = State!;
        await _pipeline.EndingAsync(this);
        var kind = status switch
        {
            RunStatus.Completed => JournalKind.RunCompleted,
            RunStatus.Cancelled => JournalKind.RunCancelled,
            RunStatus.DeadLettered => JournalKind.RunDeadLettered,
            _ => JournalKind.RunFailed,
        };
        var payload = result ?? RunPayloads.Write(error!.ToPayload());

        // Only once the final row is durable do readers see the run as finished.
        await _journal.TransitionAsync([new(kind, null, kind.ToString(), status == RunStatus.Completed, payload, null)], status, new RunEnd(result, error));
        state.Escalations.Clear();
        state.Approvals.Clear();

        _terminal.TrySetResult();
        LogFinished(_logger, RunId, status);
        Telemetry.SpineTelemetry.RunsEnded.Add(1, new KeyValuePair<string, object?>("spine.workflow.type", state.WorkflowType), new KeyValuePair<string, object?>("spine.run.status", status.ToString()));
        DelayDeactivation(TimeSpan.Zero);
        ScheduleIdleDeactivation();
    }

    /// <summary>A finished run leaves memory soon; its journal answers any later call.</summary>
    private void ScheduleIdleDeactivation() =>
        this.RegisterGrainTimer(
            () =>
            {
                DeactivateOnIdle();
                return Task.CompletedTask;
            },
            new GrainTimerCreationOptions { DueTime = Options.FinishedRunIdleTime, Period = Timeout.InfiniteTimeSpan, Interleave = true });


    private ErrorPayload ErrorFrom(Exception e) => e switch
    {
        NonDeterminismException n => new ErrorPayload(n.Kind, n.Message, n.GetType().FullName, ErrorClass.NonDeterminism.Name(), Step: n.Step),
        PolicyDeniedException p => new ErrorPayload(p.Kind, p.Message, p.GetType().FullName, ErrorClass.PolicyDenied.Name(), Step: p.Step, StepName: p.Target),
        BudgetExhaustedException b => new ErrorPayload(b.Kind, b.Message, b.GetType().FullName, ErrorClass.BudgetExhausted.Name(), Step: b.Step, StepName: b.Target),
        SpineException s => new ErrorPayload(s.Kind, s.Message, s.GetType().FullName, ErrorClass.Terminal.Name()),
        _ => new ErrorPayload("terminal", $"Run {RunId}: the workflow threw {e.GetType().Name}: {e.Message}", e.GetType().FullName, ErrorClass.Terminal.Name()),
    };

    private RunInfo Info()
    {
        if (State is null)
        {
            _journal.ThrowIfTampered();
        }

        var state = State ?? throw new RunNotFoundException(RunId);
        return new RunInfo
        {
            RunId = RunId,
            WorkflowType = state.WorkflowType,
            WorkflowVersion = state.WorkflowVersion,
            AccountId = state.AccountId,
            IdempotencyKey = state.IdempotencyKey,
            Status = state.Status,
            ResultJson = state.Result,
            Error = state.Error,
            CreatedAt = state.CreatedAt,
            UpdatedAt = state.UpdatedAt,
            StepsRecorded = History.StepsRecorded,
            Escalation = state.Escalations.Values.FirstOrDefault()?.Escalation,
            Escalations = state.Escalations.Values.Select(e => e.Escalation).ToList(),
            Origin = state.Origin,
            StartedBy = state.StartedBy,
            Approvals = state.Approvals.Values.Select(a => a.ToPending(RunId, state.AccountId)).ToList(),
        };
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Run {RunId} is quarantined and will not execute: its journal does not verify at row {Seq}: {Problem}")]
    private static partial void LogQuarantined(ILogger logger, string runId, int? seq, string? problem);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId}: its quarantine could not be written to the index ({Detail}); the next activation verifies it again")]
    private static partial void LogQuarantineNotRecorded(ILogger logger, string runId, string detail);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId}: a callback of a call in flight threw when the cancel reached it")]
    private static partial void LogCancelCallbackFailed(ILogger logger, string runId, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId} started: workflow {WorkflowType} v{Version}")]
    private static partial void LogStarted(ILogger logger, string runId, string workflowType, int version);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId} resuming from its journal ({Steps} steps recorded)")]
    private static partial void LogResuming(ILogger logger, string runId, int steps);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId} finished: {Status}")]
    private static partial void LogFinished(ILogger logger, string runId, RunStatus status);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId} suspended; the recovery sweep or its wait reminder will resume it from the journal")]
    private static partial void LogSuspended(ILogger logger, Exception exception, string runId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Run {RunId}: PostgreSQL refused a journal write for good; dead-lettering the run")]
    private static partial void LogRefused(ILogger logger, Exception exception, string runId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId}: reporting a compensation's outcome to the breaker of tool {Tool} failed")]
    private static partial void LogBreakerReportFailed(ILogger logger, Exception exception, string runId, string tool);

    [LoggerMessage(Level = LogLevel.Error, Message = "Run {RunId} cannot resume on this silo")]
    private static partial void LogCannotResume(ILogger logger, Exception exception, string runId);
}
