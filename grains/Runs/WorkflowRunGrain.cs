using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Spine.Breakers;
using Spine.Errors;
using Spine.Hosting;
using Spine.Journal;
using Spine.Storage;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Runs;

/// <summary>
/// One workflow run. Its journal in PostgreSQL is its state: on activation the grain reads it back and,
/// when the run is unfinished, re-executes the workflow, which the journal answers up to the first
/// unrecorded step. After a silo dies, the recovery sweep brings executing runs back, and the reminder
/// every wait registers brings waiting runs back when their wait is due.
/// </summary>
/// <remarks>
/// Placed at random: the recovery sweep activates a dead silo's runs from one silo, and the default placement
/// prefers the caller's silo, which landed every orphaned run on the sweep's silo.
/// </remarks>
[Orleans.Placement.RandomPlacement]
public sealed partial class WorkflowRunGrain : Grain, IWorkflowRunGrain, IRemindable
{
    internal const string ResumeReminderName = "spine.resume";

    private readonly WorkflowRegistry _workflows;
    private readonly JournalWriter _writer;
    private readonly JournalStore _store;
    private readonly StorageRetry _storage;
    private readonly ILogger<WorkflowRunGrain> _logger;
    private readonly RunHistory _history = new();
    private readonly SemaphoreSlim _appendLock = new(1, 1);
    private readonly CancellationTokenSource _shutdown = new();
    private readonly TaskCompletionSource _terminal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private RunState? _state;
    private Task? _execution;
    private readonly SemaphoreSlim _reminderLock = new(1, 1);
    private readonly Dictionary<TaskCompletionSource, DateTimeOffset> _waiters = [];
    private readonly Dictionary<int, TaskCompletionSource<OperatorAction>> _operators = [];
    private readonly HashSet<int> _decisionsClaimed = [];
    private IGrainReminder? _reminder;
    private DateTimeOffset? _reminderDue;
    private int _liveCalls;
    private int _sleeping;

    /// <summary>Created by Orleans.</summary>
    public WorkflowRunGrain(
        WorkflowRegistry workflows,
        ToolRegistry tools,
        CircuitBreakerCache breakers,
        JournalWriter writer,
        JournalStore store,
        StorageRetry storage,
        IOptions<SpineOptions> options,
        TimeProvider time,
        IServiceProvider services,
        ILogger<WorkflowRunGrain> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _workflows = workflows;
        Tools = tools;
        Breakers = breakers;
        _writer = writer;
        _store = store;
        _storage = storage;
        Options = options.Value;
        Time = time;
        Services = services;
        _logger = logger;
    }

    internal string RunId => this.GetPrimaryKeyString();

    internal ToolRegistry Tools { get; }

    internal CircuitBreakerCache Breakers { get; }

    internal SpineOptions Options { get; }

    internal TimeProvider Time { get; }

    internal IServiceProvider Services { get; }

    internal RunHistory History => _history;

    internal CancellationToken ShutdownToken => _shutdown.Token;

    /// <inheritdoc />
    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var rows = await _storage.ExecuteAsync(token => _store.ReadAsync(RunId, token), cancellationToken);
        if (rows.Count == 0)
        {
            return;
        }

        foreach (var row in rows)
        {
            Apply(row);
        }

        if (_state!.Status.IsTerminal())
        {
            // The final rows commit with the final index row; restating it repairs an index that a refused or
            // lost write left behind (a finished status always wins over an unfinished one).
            await WriteAsync([], _state.ToRunRow(RunId));
            _terminal.TrySetResult();
            ScheduleIdleDeactivation();
            return;
        }

        // A status written without a journal row (sleeping) may be stale after a crash: this activation is now
        // the newest writer of the index, so it states the status its journal folds to, stamped now. The
        // index refuses it if the run finished meanwhile (a finished status is final).
        _state.UpdatedAt = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        await WriteAsync([], _state.ToRunRow(RunId));
        LogResuming(_logger, RunId, _history.StepsRecorded);
        StartExecution();
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
    public async Task<RunInfo> CancelAsync(string? reason)
    {
        var state = _state ?? throw new RunNotFoundException(RunId);
        if (state.Status.IsTerminal() || state.CancelRequested || state.Compensation is not null)
        {
            return Info();
        }

        // Set before the await so a second cancel interleaving here does not journal twice.
        state.CancelRequested = true;
        state.CancelReason = reason;

        // A sleeping or escalated run is executing again from here on (towards its end): the index must say
        // so in the same commit, or a crash would leave it where the recovery sweep does not look.
        var resumes = state.Status is RunStatus.Sleeping or RunStatus.AwaitingOperator;
        var now = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        try
        {
            await AppendAsync(JournalKind.CancelRequested, null, "CancelRequested", true, RunPayloads.Reason(reason),
                resumes ? state.ToRunRow(RunId) with { Status = RunStatus.Running, UpdatedAt = now } : null);
        }
        catch
        {
            state.CancelRequested = false;
            state.CancelReason = null;
            throw;
        }

        if (resumes)
        {
            state.Status = RunStatus.Running;
            state.UpdatedAt = now;
        }

        // Every waiter wakes: sleeps and retry waits see the cancel, escalations end with it.
        foreach (var waiter in _waiters.Keys)
        {
            waiter.TrySetResult();
        }

        foreach (var decision in _operators.Values)
        {
            decision.TrySetException(new RunCancelledException(RunId, reason));
        }

        state.Escalations.Clear();
        StartExecution();
        return Info();
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<JournalEntryView>> GetJournalAsync()
    {
        if (_state is null)
        {
            throw new RunNotFoundException(RunId);
        }

        return Task.FromResult<IReadOnlyList<JournalEntryView>>(_history.Rows.Select(r => r.ToView()).ToList());
    }

    /// <inheritdoc />
    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        if (reminderName != ResumeReminderName)
        {
            return;
        }

        if (_state is null || _state.Status.IsTerminal())
        {
            // A start that never became durable, or a finished run whose reminder removal was lost.
            await DropReminderAsync();
            return;
        }

        StartExecution();
    }

    internal bool TryGetOutcome(int step, out JournalRow row) => _history.TryGetOutcome(step, out row);

    internal string? GetParameter(string name) => _state?.Parameters?.GetValueOrDefault(name);

    internal RunOrigin? Origin => _state?.Origin;

    internal void ThrowIfCancelRequested()
    {
        if (_state is { CancelRequested: true })
        {
            throw new RunCancelledException(RunId, _state.CancelReason);
        }
    }

    /// <summary>Appends one journal row (and optionally the index row) and waits for it to be durable.</summary>
    internal async Task<JournalRow> AppendAsync(JournalKind kind, int? step, string name, bool ok, string? payload, RunRow? run = null, int? attempt = null) =>
        (await WriteAsync([new PendingRow(kind, step, name, ok, payload, attempt)], run))[0];

    /// <summary>
    /// Appends rows and/or the index row in one commit: all of them are durable, or none. Every write of
    /// the run goes through here, one at a time, so two writes of one run never share (or reorder in) a batch.
    /// </summary>
    internal async Task<IReadOnlyList<JournalRow>> WriteAsync(IReadOnlyList<PendingRow> pending, RunRow? run, CancellationToken deadline = default)
    {
        await _appendLock.WaitAsync();
        try
        {
            var rows = new List<JournalRow>(pending.Count);
            var previous = _history.Rows.Count == 0 ? JournalHash.Genesis : _history.Rows[^1].Hash;
            var seq = _history.Rows.Count;
            foreach (var p in pending)
            {
                var at = JournalHash.ToStoredPrecision(Time.GetUtcNow());
                var name = RunPayloads.Clean(p.Name);
                var hash = JournalHash.Compute(previous, RunId, seq, p.Kind, p.Step, name, p.Ok, p.Payload, at, p.Attempt);
                rows.Add(new JournalRow(RunId, seq, p.Kind, p.Step, name, p.Ok, p.Payload, at, previous, hash, p.Attempt));
                previous = hash;
                seq++;
            }

            // The index row says how long the journal is with these rows: that, not a clock, orders index writes.
            run = run is null ? null : run with { JournalSeq = seq };
            try
            {
                // An outage is ridden out here, in place: the run continues as soon as PostgreSQL answers again.
                using var stop = deadline.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token, deadline) : null;
                await _storage.ExecuteAsync(_ => _writer.AppendAsync(rows, run), stop?.Token ?? _shutdown.Token);
            }
            catch (JournalConflictException) when (rows.Count > 0)
            {
                // Either a try whose acknowledgement was lost did commit (then the stored rows are these very
                // rows, hashes and all), or another activation wrote here first and this one must stop.
                if (!await LandedAsync(rows))
                {
                    DeactivateOnIdle();
                    throw;
                }
            }
            catch (StorageUnavailableException e) when (!e.IsTransient)
            {
                // Refused for good: the transaction did not commit, so this activation's view is still the journal.
                throw;
            }
            catch (Exception e) when (e is StorageUnavailableException or OperationCanceledException)
            {
                // The outcome is unknown (this activation is ending during an outage): the journal stays the
                // truth, and the next activation reads it afresh.
                DeactivateOnIdle();
                throw;
            }

            foreach (var row in rows)
            {
                _history.Add(row);
            }

            return rows;
        }
        finally
        {
            _appendLock.Release();
        }
    }

    /// <summary>Whether <paramref name="rows"/> are in the stored journal exactly as this activation wrote them.</summary>
    private async Task<bool> LandedAsync(IReadOnlyList<JournalRow> rows)
    {
        var stored = await _storage.ExecuteAsync(token => _store.ReadAsync(RunId, token), _shutdown.Token);
        return rows.All(r => r.Seq < stored.Count && stored[r.Seq].Seq == r.Seq && stored[r.Seq].Hash.AsSpan().SequenceEqual(r.Hash));
    }

    internal sealed record PendingRow(JournalKind Kind, int? Step, string Name, bool Ok, string? Payload, int? Attempt);

    /// <summary>
    /// Waits until <paramref name="wakeAt"/>: a grain timer for the wait itself, the run's one reminder as the
    /// durable backstop of every wait (due at the earliest of them). Any number of calls may wait at once,
    /// and a cancel wakes them all. A sleep (<paramref name="sleeping"/>) counts towards the run showing as
    /// <see cref="RunStatus.Sleeping"/>; a retry wait leaves the run executing.
    /// </summary>
    internal async Task WaitUntilAsync(DateTimeOffset wakeAt, bool sleeping)
    {
        if (wakeAt - Time.GetUtcNow() <= TimeSpan.Zero)
        {
            return;
        }

        var state = _state!;
        var cancellable = state.Compensation is null;

        // Registered before the first await, so a cancel arriving while the wait is being set up still wakes it.
        var wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _waiters[wake] = wakeAt;
        _sleeping += sleeping ? 1 : 0;
        try
        {
            if (cancellable)
            {
                ThrowIfCancelRequested();
            }

            // The backstop is in place before the status says the run is not executing: if this fails, the
            // run still shows as executing and the recovery sweep resumes it.
            await EnsureReminderAsync();
            if (sleeping)
            {
                await RefreshStatusAsync();
            }

            var left = wakeAt - Time.GetUtcNow();
            using var timer = this.RegisterGrainTimer(
                () =>
                {
                    wake.TrySetResult();
                    return Task.CompletedTask;
                },
                new GrainTimerCreationOptions { DueTime = left > TimeSpan.Zero ? left : TimeSpan.Zero, Period = Timeout.InfiniteTimeSpan, Interleave = true });
            await using (_shutdown.Token.Register(() => wake.TrySetCanceled()))
            {
                await wake.Task;
            }

            if (cancellable)
            {
                ThrowIfCancelRequested();
            }
        }
        finally
        {
            _waiters.Remove(wake);
            _sleeping -= sleeping ? 1 : 0;
        }

        await RefreshStatusAsync();

        // The reminder may have been due at this wait: it must now cover the earliest wait still pending.
        await EnsureReminderAsync();
    }

    /// <summary>
    /// Makes sure the run's reminder fires no later than its earliest pending wait. One reminder serves every
    /// wait: a later wait never moves it past an earlier one, and a wait covered by a pending due time
    /// costs no write.
    /// </summary>
    private async Task EnsureReminderAsync()
    {
        await _reminderLock.WaitAsync();
        try
        {
            if (_waiters.Count == 0)
            {
                return;
            }

            var earliest = _waiters.Values.Min();
            if (_reminderDue is { } due && due <= earliest && due > Time.GetUtcNow())
            {
                return;
            }

            _reminder = await _storage.ExecuteAsync(
                async _ =>
                {
                    try
                    {
                        var left = earliest - Time.GetUtcNow();
                        return await this.RegisterOrUpdateReminder(ResumeReminderName, left > TimeSpan.Zero ? left : TimeSpan.Zero, Options.ResumeReminderPeriod);
                    }
                    catch (Exception e) when (e is not (OperationCanceledException or ArgumentException))
                    {
                        // The reminder table is PostgreSQL too: an outage is waited out like any other write (an
                        // ArgumentException, a period below Orleans' minimum, is configuration and not retried).
                        throw new StorageUnavailableException("wait reminder registration", e.Message, e);
                    }
                },
                _shutdown.Token);
            _reminderDue = earliest;
        }
        finally
        {
            _reminderLock.Release();
        }
    }

    /// <summary>A live context call begins (it counts towards the run's status until <see cref="ExitCall"/>).</summary>
    internal void EnterCall() => _liveCalls++;

    /// <summary>A live context call ended.</summary>
    internal void ExitCall() => _liveCalls--;

    /// <summary>
    /// The status the run's live calls add up to: executing while any call executes (or waits for a retry),
    /// else waiting for an operator while any step is escalated, else sleeping while any call sleeps.
    /// </summary>
    private RunStatus LiveStatus(int escalated) =>
        _liveCalls > _sleeping + escalated ? RunStatus.Running
        : escalated > 0 ? RunStatus.AwaitingOperator
        : _sleeping > 0 ? RunStatus.Sleeping
        : RunStatus.Running;

    /// <summary>
    /// An executing run is never collected as idle (a long step must not be cancelled and run again); one that
    /// only sleeps or waits for an operator may be, since its reminder or the decision brings it back.
    /// </summary>
    private void KeepAliveWhile(RunStatus live) =>
        DelayDeactivation(live is RunStatus.Sleeping or RunStatus.AwaitingOperator ? TimeSpan.Zero : TimeSpan.MaxValue);

    /// <summary>Writes the status the live calls add up to, when it differs from the stored one (no write on a step's hot path).</summary>
    internal async Task RefreshStatusAsync()
    {
        var state = _state!;
        if (state.Compensation is not null || state.Status is not (RunStatus.Running or RunStatus.Sleeping or RunStatus.AwaitingOperator))
        {
            return;
        }

        var live = LiveStatus(state.Escalations.Count);
        KeepAliveWhile(live);
        if (live != state.Status)
        {
            await SetStatusAsync(live);
        }
    }

    private async Task SetStatusAsync(RunStatus status)
    {
        var state = _state!;
        state.Status = status;
        state.UpdatedAt = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        await WriteAsync([], state.ToRunRow(RunId));
    }

    /// <summary>How long a start keeps trying to commit before it answers that its outcome is unknown (below Orleans' 30 s call timeout).</summary>
    internal static readonly TimeSpan StartConfirmTimeout = TimeSpan.FromSeconds(20);

    /// <summary>The journal format new runs are written in (see <see cref="StartedPayload.JournalFormat"/>).</summary>
    internal const int CurrentJournalFormat = 2;

    private async Task<RunInfo> BeginAsync(StartRunRequest request, RunOrigin? origin, IReadOnlyList<JournalRow> reused, int journalFormat = CurrentJournalFormat)
    {
        if (_state is not null)
        {
            // A second start of the same run id: the same request gets the run; a different one is refused.
            if (origin is null && _state.DifferenceFrom(request) is { } difference)
            {
                throw new IdempotencyKeyConflictException(RunId, _state.IdempotencyKey, difference);
            }

            return Info();
        }

        RunIds.CheckIdentifier(request.AccountId, "account id");
        RunIds.CheckIdentifier(request.IdempotencyKey, "idempotency key");
        var registration = _workflows.Resolve(request.WorkflowType, request.WorkflowVersion);
        var input = RunPayloads.CheckJson(request.InputJson, $"input of workflow '{registration.Name}'", Options.MaxPayloadBytes);
        registration.ParseInput(request.InputJson);

        // No reminder here: the index row committed with the start says the run is executing, and the
        // recovery sweep (RunRecoveryGrain) resumes every such run whose silo died.
        var started = new StartedPayload(registration.Name, registration.Version, request.AccountId, request.IdempotencyKey, input, request.Parameters, origin, journalFormat);
        var state = RunState.Started(started, JournalHash.ToStoredPrecision(Time.GetUtcNow()));
        var rows = new List<PendingRow> { new(JournalKind.RunStarted, null, "RunStarted", true, RunPayloads.Write(started), null) };
        rows.AddRange(reused.Select(r => new PendingRow(r.Kind, r.Step, r.Name, r.Ok, r.Payload, r.Attempt)));
        try
        {
            // The start and the rows a replay reuses commit together: a replay is never half-copied. It is tried
            // for a bounded time, inside the caller's call timeout, so that the caller hears back either way.
            using var deadline = new CancellationTokenSource(StartConfirmTimeout, Time);
            await WriteAsync(rows, state.ToRunRow(RunId), deadline.Token);
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

        // WriteAsync returned: the start is durable (confirmed by reading back when its acknowledgement was lost).
        _state = state;
        LogStarted(_logger, RunId, state.WorkflowType, state.WorkflowVersion);
        StartExecution();
        return Info();
    }

    private void StartExecution()
    {
        if (_execution is { IsCompleted: false } || _state is null || _state.Status.IsTerminal())
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
        var state = _state!;
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

            var context = new WorkflowContext(this, registration, state);
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
            catch (Exception e) when (e is StorageUnavailableException or JournalConflictException)
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
        catch (Exception e) when (e is StorageUnavailableException or JournalConflictException)
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
        catch (Exception e) when (e is StorageUnavailableException or JournalConflictException or OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Ends the run: compensations first when it did not complete, then the final row.</summary>
    private async Task EndAsync(RunStatus status, string? result, ErrorPayload? error, bool deadLetter)
    {
        var state = _state!;
        if (status != RunStatus.Completed && PendingCompensations().Any())
        {
            if (state.Compensation is null)
            {
                var plan = new CompensationPlan(status, error, deadLetter);
                var now = JournalHash.ToStoredPrecision(Time.GetUtcNow());
                await AppendAsync(JournalKind.CompensationStarted, null, "CompensationStarted", true, RunPayloads.Write(plan),
                    state.ToRunRow(RunId) with { Status = RunStatus.Compensating, UpdatedAt = now });
                state.Compensation = plan;
                state.Status = RunStatus.Compensating;
                state.UpdatedAt = now;
            }

            var failure = await CompensateAsync();
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
        var state = _state!;
        var kind = status switch
        {
            RunStatus.Completed => JournalKind.RunCompleted,
            RunStatus.Cancelled => JournalKind.RunCancelled,
            RunStatus.DeadLettered => JournalKind.RunDeadLettered,
            _ => JournalKind.RunFailed,
        };
        var now = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        var payload = result ?? RunPayloads.Write(error!.ToPayload());
        var row = state.ToRunRow(RunId) with
        {
            Status = status,
            Result = result,
            ErrorKind = error?.Kind,
            ErrorMessage = RunPayloads.Clean(error?.Message),
            ErrorStep = error?.Step,
            ErrorStepName = RunPayloads.Clean(error?.StepName),
            UpdatedAt = now,
        };
        await AppendAsync(kind, null, kind.ToString(), status == RunStatus.Completed, payload, row);

        // Only now, with the final row durable, do readers see the run as finished.
        state.Status = status;
        state.Result = result;
        state.Error = error;
        state.Escalations.Clear();
        state.UpdatedAt = now;

        _terminal.TrySetResult();
        LogFinished(_logger, RunId, status);
        DelayDeactivation(TimeSpan.Zero);
        ScheduleIdleDeactivation();
        if (_reminder is not null)
        {
            try
            {
                await DropReminderAsync();
            }
            catch (Exception e)
            {
                // Harmless: the next tick finds the run terminal and removes the reminder then.
                LogReminderRemovalFailed(_logger, e, RunId);
            }
        }
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

    private async Task DropReminderAsync()
    {
        var reminder = _reminder ?? await this.GetReminder(ResumeReminderName);
        if (reminder is not null)
        {
            await this.UnregisterReminder(reminder);
        }

        _reminder = null;
    }

    private ErrorPayload ErrorFrom(Exception e) => e switch
    {
        NonDeterminismException n => new ErrorPayload(n.Kind, n.Message, n.GetType().FullName, ErrorClass.NonDeterminism.Name(), Step: n.Step),
        SpineException s => new ErrorPayload(s.Kind, s.Message, s.GetType().FullName, ErrorClass.Terminal.Name()),
        _ => new ErrorPayload("terminal", $"Run {RunId}: the workflow threw {e.GetType().Name}: {e.Message}", e.GetType().FullName, ErrorClass.Terminal.Name()),
    };

    private RunInfo Info()
    {
        var state = _state ?? throw new RunNotFoundException(RunId);
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
            StepsRecorded = _history.StepsRecorded,
            Escalation = state.Escalations.Values.FirstOrDefault()?.Escalation,
            Escalations = state.Escalations.Values.Select(e => e.Escalation).ToList(),
            Origin = state.Origin,
        };
    }

    /// <summary>Folds one journal row read at activation into the history and the control state.</summary>
    private void Apply(JournalRow row)
    {
        _history.Add(row);
        _state = RunState.Fold(_state, row);
    }

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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId}: removing its resume reminder failed")]
    private static partial void LogReminderRemovalFailed(ILogger logger, Exception exception, string runId);
}
