using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Spine.Errors;
using Spine.Hosting;
using Spine.Journal;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Runs;

/// <summary>
/// One workflow run. Its journal in PostgreSQL is its state: on activation the grain reads it back and,
/// when the run is unfinished, re-executes the workflow, which the journal answers up to the first
/// unrecorded step. A reminder held while the run is unfinished brings it back after a silo dies.
/// </summary>
public sealed partial class WorkflowRunGrain : Grain, IWorkflowRunGrain, IRemindable
{
    internal const string ResumeReminderName = "spine.resume";

    private readonly WorkflowRegistry _workflows;
    private readonly JournalWriter _writer;
    private readonly JournalStore _store;
    private readonly SpineOptions _options;
    private readonly ILogger<WorkflowRunGrain> _logger;
    private readonly List<JournalRow> _rows = [];
    private readonly Dictionary<int, JournalRow> _steps = [];
    private readonly SemaphoreSlim _appendLock = new(1, 1);
    private readonly CancellationTokenSource _shutdown = new();
    private readonly TaskCompletionSource _terminal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private RunState? _state;
    private Task? _execution;
    private IGrainReminder? _reminder;
    private TaskCompletionSource? _wake;

    /// <summary>Created by Orleans.</summary>
    public WorkflowRunGrain(
        WorkflowRegistry workflows,
        ToolRegistry tools,
        JournalWriter writer,
        JournalStore store,
        IOptions<SpineOptions> options,
        TimeProvider time,
        IServiceProvider services,
        ILogger<WorkflowRunGrain> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _workflows = workflows;
        Tools = tools;
        _writer = writer;
        _store = store;
        _options = options.Value;
        Time = time;
        Services = services;
        _logger = logger;
    }

    internal string RunId => this.GetPrimaryKeyString();

    internal ToolRegistry Tools { get; }

    internal TimeProvider Time { get; }

    internal IServiceProvider Services { get; }

    internal int MaxPayloadBytes => _options.MaxPayloadBytes;

    internal CancellationToken ShutdownToken => _shutdown.Token;

    /// <inheritdoc />
    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var rows = await _store.ReadAsync(RunId, cancellationToken);
        if (rows.Count == 0)
        {
            return;
        }

        Restore(rows);
        if (_state!.Status.IsTerminal())
        {
            // A crash may have come between the final journal row and the index row or reminder removal.
            await _writer.AppendAsync(null, _state.ToRunRow(RunId));
            await DropReminderAsync();
            _terminal.TrySetResult();
            return;
        }

        LogResuming(_logger, RunId, _steps.Count);
        StartExecution();
    }

    /// <inheritdoc />
    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _shutdown.Cancel();
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public async Task<RunInfo> StartAsync(StartRunRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (_state is not null)
        {
            return Info();
        }

        var registration = _workflows.Resolve(request.WorkflowType, request.WorkflowVersion);
        RunPayloads.CheckJson(request.InputJson, $"input of workflow '{registration.Name}'", _options.MaxPayloadBytes);
        registration.ParseInput(request.InputJson);

        // The reminder goes first: a run whose start is durable must never lack the reminder that resumes it.
        _reminder = await this.RegisterOrUpdateReminder(ResumeReminderName, _options.ResumeReminderPeriod, _options.ResumeReminderPeriod);

        var now = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        var state = new RunState
        {
            WorkflowType = registration.Name,
            WorkflowVersion = registration.Version,
            AccountId = request.AccountId,
            IdempotencyKey = request.IdempotencyKey,
            InputJson = request.InputJson,
            CreatedAt = now,
            UpdatedAt = now,
            Status = RunStatus.Running,
        };
        try
        {
            await AppendAsync(JournalKind.RunStarted, null, "RunStarted", true, RunPayloads.Started(request, registration.Version), state.ToRunRow(RunId));
        }
        catch (SpineException)
        {
            await DropReminderAsync();
            throw;
        }

        _state = state;
        LogStarted(_logger, RunId, state.WorkflowType, state.WorkflowVersion);
        StartExecution();
        return Info();
    }

    /// <inheritdoc />
    public Task<RunInfo> GetInfoAsync() => Task.FromResult(Info());

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
        if (state.Status.IsTerminal() || state.CancelRequested)
        {
            return Info();
        }

        await AppendAsync(JournalKind.CancelRequested, null, "CancelRequested", true, RunPayloads.Reason(reason));
        state.CancelRequested = true;
        state.CancelReason = reason;
        _wake?.TrySetResult();
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

        return Task.FromResult<IReadOnlyList<JournalEntryView>>(_rows.Select(r => r.ToView()).ToList());
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

    internal bool TryGetStep(int step, out JournalRow row) => _steps.TryGetValue(step, out row!);

    internal void ThrowIfCancelRequested()
    {
        if (_state is { CancelRequested: true })
        {
            throw new RunCancelledException(RunId, _state.CancelReason);
        }
    }

    /// <summary>Appends one journal row (and optionally the index row) and waits for it to be durable.</summary>
    internal async Task<JournalRow> AppendAsync(JournalKind kind, int? step, string name, bool ok, string? payload, RunRow? run = null)
    {
        await _appendLock.WaitAsync();
        try
        {
            var seq = _rows.Count;
            var previous = seq == 0 ? JournalHash.Genesis : _rows[^1].Hash;
            var at = JournalHash.ToStoredPrecision(Time.GetUtcNow());
            var hash = JournalHash.Compute(previous, RunId, seq, kind, step, name, ok, payload, at);
            var row = new JournalRow(RunId, seq, kind, step, name, ok, payload, at, previous, hash);
            await _writer.AppendAsync(row, run);
            _rows.Add(row);
            if (step is { } number)
            {
                _steps[number] = row;
            }

            return row;
        }
        finally
        {
            _appendLock.Release();
        }
    }

    /// <summary>Waits for a durable timer; the grain may deactivate meanwhile and the reminder brings it back.</summary>
    internal async Task WaitUntilAsync(DateTimeOffset wakeAt)
    {
        var delay = wakeAt - Time.GetUtcNow();
        if (delay <= TimeSpan.Zero)
        {
            return;
        }

        ThrowIfCancelRequested();
        var state = _state!;
        await SetStatusAsync(RunStatus.Sleeping);
        var longSleep = delay > _options.ResumeReminderPeriod;
        if (longSleep)
        {
            // Move the reminder to the wake-up time so a long sleep costs no periodic activations.
            _reminder = await this.RegisterOrUpdateReminder(ResumeReminderName, delay, _options.ResumeReminderPeriod);
        }

        var wake = _wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var timer = this.RegisterGrainTimer(
            () =>
            {
                wake.TrySetResult();
                return Task.CompletedTask;
            },
            new GrainTimerCreationOptions { DueTime = delay, Period = Timeout.InfiniteTimeSpan, Interleave = true });
        await using (_shutdown.Token.Register(() => wake.TrySetCanceled()))
        {
            try
            {
                await wake.Task;
            }
            finally
            {
                _wake = null;
            }
        }

        if (longSleep)
        {
            _reminder = await this.RegisterOrUpdateReminder(ResumeReminderName, _options.ResumeReminderPeriod, _options.ResumeReminderPeriod);
        }

        ThrowIfCancelRequested();
        if (state.Status == RunStatus.Sleeping)
        {
            await SetStatusAsync(RunStatus.Running);
        }
    }

    private async Task SetStatusAsync(RunStatus status)
    {
        var state = _state!;
        state.Status = status;
        state.UpdatedAt = JournalHash.ToStoredPrecision(Time.GetUtcNow());
        await _writer.AppendAsync(null, state.ToRunRow(RunId));
    }

    private void StartExecution()
    {
        if (_execution is { IsCompleted: false } || _state is null || _state.Status.IsTerminal())
        {
            return;
        }

        _execution = ExecuteAsync();
    }

    private async Task ExecuteAsync()
    {
        var state = _state!;
        WorkflowRegistration registration;
        try
        {
            registration = _workflows.Resolve(state.WorkflowType, state.WorkflowVersion);
        }
        catch (UnknownWorkflowException e)
        {
            // A silo without this workflow version (a rolling deploy): leave the run for one that has it.
            LogCannotResume(_logger, e, RunId);
            return;
        }

        var context = new WorkflowContext(this, registration, state);
        string output;
        try
        {
            var input = registration.ParseInput(state.InputJson);
            output = await registration.Invoke(Services, context, input);
            RunPayloads.CheckSize(output, $"result of run {RunId}", _options.MaxPayloadBytes);
        }
        catch (Exception) when (_shutdown.IsCancellationRequested)
        {
            return;
        }
        catch (Exception e) when (e is StorageUnavailableException or JournalConflictException)
        {
            // Nothing after the last durable row happened as far as the run is concerned: step aside,
            // and let the reminder resume the run from its journal.
            LogSuspended(_logger, e, RunId);
            DeactivateOnIdle();
            return;
        }
        catch (RunCancelledException e)
        {
            await FinishAsync(RunStatus.Cancelled, null, new RunError(e.Kind, e.Message));
            return;
        }
        catch (Exception e)
        {
            await FinishAsync(RunStatus.Failed, null, ErrorFrom(e));
            return;
        }

        await FinishAsync(RunStatus.Completed, output, null);
    }

    private async Task FinishAsync(RunStatus status, string? result, RunError? error)
    {
        var state = _state!;
        var kind = status switch
        {
            RunStatus.Completed => JournalKind.RunCompleted,
            RunStatus.Cancelled => JournalKind.RunCancelled,
            _ => JournalKind.RunFailed,
        };
        var payload = result ?? RunPayloads.Error(error!.Kind, error.Message, error.ExceptionType);
        var finished = state.Finish(status, result, error, JournalHash.ToStoredPrecision(Time.GetUtcNow()));
        try
        {
            await AppendAsync(kind, null, kind.ToString(), status == RunStatus.Completed, payload, finished.ToRunRow(RunId));
        }
        catch (Exception e) when (e is StorageUnavailableException or JournalConflictException)
        {
            LogSuspended(_logger, e, RunId);
            DeactivateOnIdle();
            return;
        }

        _state = finished;
        _terminal.TrySetResult();
        LogFinished(_logger, RunId, status);
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

    private async Task DropReminderAsync()
    {
        var reminder = _reminder ?? await this.GetReminder(ResumeReminderName);
        if (reminder is not null)
        {
            await this.UnregisterReminder(reminder);
        }

        _reminder = null;
    }

    private RunError ErrorFrom(Exception e) => e switch
    {
        StepFailedException s => new RunError(s.ErrorKind, s.Message, s.Step, s.StepName, s.ExceptionType),
        NonDeterminismException n => new RunError(n.Kind, n.Message, n.Step),
        SpineException s => new RunError(s.Kind, s.Message, ExceptionType: s.GetType().FullName),
        _ => new RunError("terminal", $"Run {RunId}: the workflow threw {e.GetType().Name}: {e.Message}", ExceptionType: e.GetType().FullName),
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
            StepsRecorded = _steps.Count,
        };
    }

    private void Restore(List<JournalRow> rows)
    {
        foreach (var row in rows)
        {
            _rows.Add(row);
            if (row.Step is { } step)
            {
                _steps[step] = row;
            }

            switch (row.Kind)
            {
                case JournalKind.RunStarted:
                    var (type, version, account, key, input) = RunPayloads.ReadStarted(row.Payload!);
                    _state = new RunState
                    {
                        WorkflowType = type,
                        WorkflowVersion = version,
                        AccountId = account,
                        IdempotencyKey = key,
                        InputJson = input,
                        CreatedAt = row.RecordedAt,
                        UpdatedAt = row.RecordedAt,
                        Status = RunStatus.Running,
                    };
                    break;
                case JournalKind.CancelRequested:
                    _state!.CancelRequested = true;
                    _state.CancelReason = RunPayloads.ReadReason(row.Payload);
                    break;
                case JournalKind.RunCompleted:
                    _state = _state!.Finish(RunStatus.Completed, row.Payload, null, row.RecordedAt);
                    break;
                case JournalKind.RunFailed or JournalKind.RunCancelled:
                    var error = RunPayloads.ReadError(row.Payload);
                    _state = _state!.Finish(
                        row.Kind == JournalKind.RunFailed ? RunStatus.Failed : RunStatus.Cancelled,
                        null,
                        new RunError(error.Kind, error.Message, ExceptionType: error.ExceptionType),
                        row.RecordedAt);
                    break;
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId} started: workflow {WorkflowType} v{Version}")]
    private static partial void LogStarted(ILogger logger, string runId, string workflowType, int version);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId} resuming from its journal ({Steps} steps recorded)")]
    private static partial void LogResuming(ILogger logger, string runId, int steps);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {RunId} finished: {Status}")]
    private static partial void LogFinished(ILogger logger, string runId, RunStatus status);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId} suspended; its reminder will resume it from the journal")]
    private static partial void LogSuspended(ILogger logger, Exception exception, string runId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Run {RunId} cannot resume on this silo")]
    private static partial void LogCannotResume(ILogger logger, Exception exception, string runId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId}: removing its resume reminder failed")]
    private static partial void LogReminderRemovalFailed(ILogger logger, Exception exception, string runId);
}

/// <summary>The in-memory control state of a run, rebuilt from its journal.</summary>
internal sealed class RunState
{
    public required string WorkflowType { get; init; }

    public required int WorkflowVersion { get; init; }

    public string? AccountId { get; init; }

    public string? IdempotencyKey { get; init; }

    public required string InputJson { get; init; }

    public DateTimeOffset CreatedAt { get; init; }

    public DateTimeOffset UpdatedAt { get; set; }

    public RunStatus Status { get; set; }

    public string? Result { get; init; }

    public RunError? Error { get; init; }

    public bool CancelRequested { get; set; }

    public string? CancelReason { get; set; }

    public RunState Finish(RunStatus status, string? result, RunError? error, DateTimeOffset at) => new()
    {
        WorkflowType = WorkflowType,
        WorkflowVersion = WorkflowVersion,
        AccountId = AccountId,
        IdempotencyKey = IdempotencyKey,
        InputJson = InputJson,
        CreatedAt = CreatedAt,
        UpdatedAt = at,
        Status = status,
        Result = result,
        Error = error,
        CancelRequested = CancelRequested,
        CancelReason = CancelReason,
    };

    public RunRow ToRunRow(string runId) => new(
        runId, WorkflowType, WorkflowVersion, AccountId, IdempotencyKey, Status, Result, Error?.Kind, Error?.Message, CreatedAt, UpdatedAt);
}
