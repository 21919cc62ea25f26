using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Spine.Breakers;
using Spine.Errors;
using Spine.Journal;
using Spine.Recovery;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Runs;

/// <summary>
/// The journaling context of one execution of a run. Step numbers count the workflow's context calls
/// from 1; a recorded step is answered from the journal after checking that the workflow asks for the
/// same kind and name, otherwise the call runs live (with retries) and its outcome is durable before
/// the workflow sees it.
/// </summary>
internal sealed class WorkflowContext(WorkflowRunGrain grain, WorkflowRegistration registration, RunState state) : IWorkflowContext
{
    private readonly Dictionary<string, string> _pinnedTools = new(StringComparer.Ordinal);
    private readonly ReplayOrder _replay = new(grain.History, state.JournalFormat >= 2);
    private int _step;

    public string RunId => grain.RunId;

    public string WorkflowType => registration.Name;

    public int WorkflowVersion => registration.Version;

    public string? AccountId => state.AccountId;

    public bool IsReplaying => grain.TryGetOutcome(_step + 1, out _);

    public RunOrigin? Origin => grain.Origin;

    public string? GetParameter(string name) => grain.GetParameter(name);

    public async Task<T> RunAsync<T>(string name, Func<StepContext, Task<T>> action, StepOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(action);
        var (step, recorded) = Next(JournalKind.Step, name);
        if (recorded is not null)
        {
            await _replay.TurnAsync(step);
            return Deserialize<T>(Unwrap(recorded), step, name);
        }

        T result = default!;
        var outcome = await ExecuteStepAsync(JournalKind.Step, step, name, options, options?.Retry ?? grain.Options.Retry.Step, options?.ClassifyError,
            async attempt =>
            {
                var value = await action(new StepContext(RunId, step, name, IdempotencyKey(step), grain.ShutdownToken, attempt));
                var json = JsonSerializer.Serialize(value, SpineJson.Options);
                RunPayloads.CheckSize(json, $"result of step {step} '{name}'", grain.Options.MaxPayloadBytes);

                // The workflow gets the value as the journal will give it back on replay, never the live object:
                // a type that does not survive the round trip fails here, on the first execution, not after a crash.
                result = JsonSerializer.Deserialize<T>(json, SpineJson.Options)!;
                return json;
            });

        // A skipped step's result came from an operator, not from the action.
        return outcome.Live ? result : Deserialize<T>(outcome.Row.Payload!, step, name);
    }

    public async Task<JsonElement> CallToolAsync(string tool, JsonElement arguments, string? version = null, StepOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(tool);
        var argumentsHash = arguments.ValueKind == JsonValueKind.Undefined ? null : RunPayloads.ArgumentsHash(arguments);
        var (step, recorded) = Next(JournalKind.Tool, tool, arguments, argumentsHash);
        if (recorded is not null)
        {
            await _replay.TurnAsync(step);
            return ReadToolOutput(tool, Unwrap(recorded));
        }

        var resolved = grain.Tools.TryResolve(tool);
        var policy = options?.Retry ?? resolved?.Definition.Retry ?? grain.Options.Retry.Tool;
        var outcome = await ExecuteStepAsync(JournalKind.Tool, step, tool, options, policy, options?.ClassifyError ?? resolved?.Definition.ClassifyError,
            attempt => InvokeToolAsync(tool, arguments, version, step, attempt), argumentsHash);
        return ReadToolOutput(tool, outcome.Row.Payload!);
    }

    public async Task<ChatResponse> CallModelAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, string? clientKey = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var name = clientKey ?? "model";
        var (step, recorded) = Next(JournalKind.Model, name);
        if (recorded is not null)
        {
            await _replay.TurnAsync(step);
            return JsonSerializer.Deserialize<ChatResponse>(Unwrap(recorded), SpineJson.ModelOptions)!;
        }

        var history = messages.ToList();
        var outcome = await ExecuteStepAsync(JournalKind.Model, step, name, null, grain.Options.Retry.Model, null, async _ =>
        {
            var client = (clientKey is null
                    ? grain.Services.GetService<IChatClient>()
                    : grain.Services.GetKeyedService<IChatClient>(clientKey))
                ?? throw new TerminalException($"No chat client{(clientKey is null ? "" : $" '{clientKey}'")} is registered on this silo.");
            var response = await client.GetResponseAsync(history, options, grain.ShutdownToken);
            var payload = JsonSerializer.Serialize(response, SpineJson.ModelOptions);
            RunPayloads.CheckSize(payload, $"response of model '{name}'", grain.Options.MaxPayloadBytes);
            return payload;
        });
        return JsonSerializer.Deserialize<ChatResponse>(outcome.Row.Payload!, SpineJson.ModelOptions)!;
    }

    public async Task SleepAsync(TimeSpan duration)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(duration, TimeSpan.Zero);
        var (step, recorded) = Next(JournalKind.Timer, "sleep");
        DateTimeOffset wakeAt;
        if (recorded is not null)
        {
            using var document = JsonDocument.Parse(recorded.Payload!);
            wakeAt = document.RootElement.GetProperty("wakeAt").GetDateTimeOffset();
            if (_replay.Holds(step))
            {
                // The journal says where this sleep ended among the other calls (or, in a format 1 journal,
                // where it began, which is where it ended for a sequential workflow).
                await _replay.TurnAsync(step);
                if (state.JournalFormat >= 2 || wakeAt <= grain.Time.GetUtcNow())
                {
                    return;
                }
            }
        }
        else
        {
            wakeAt = grain.Time.GetUtcNow() + duration;
        }

        grain.EnterCall();
        try
        {
            if (recorded is null)
            {
                await grain.AppendAsync(JournalKind.Timer, step, "sleep", true, RunPayloads.Write(new { wakeAt }));
            }

            await grain.WaitUntilAsync(wakeAt, sleeping: true);
            if (state.JournalFormat >= 2)
            {
                // The sleep ends live, after everything the journal already holds; its end is journaled so that
                // a replay orders it among parallel calls exactly as it happened.
                await _replay.DrainedAsync();
                await grain.AppendAsync(JournalKind.TimerFired, step, "sleep", true, null);
            }
        }
        finally
        {
            grain.ExitCall();
        }
    }

    public Task<DateTimeOffset> NowAsync() =>
        RecordValueAsync(JournalKind.Time, "now", () => grain.Time.GetUtcNow(),
            v => v.ToString("O", CultureInfo.InvariantCulture), s => DateTimeOffset.Parse(s, CultureInfo.InvariantCulture));

    public Task<long> RandomAsync() =>
        RecordValueAsync(JournalKind.Random, "random", () => BitConverter.ToInt64(RandomNumberGenerator.GetBytes(8)),
            v => v.ToString(CultureInfo.InvariantCulture), s => long.Parse(s, CultureInfo.InvariantCulture));

    public Task<Guid> NewGuidAsync() =>
        RecordValueAsync(JournalKind.Random, "guid", Guid.NewGuid, v => v.ToString("D"), Guid.Parse);

    /// <summary>
    /// Runs a step's attempts until one succeeds, a failure is terminal, or the retry policy is spent.
    /// Every failed attempt that will be retried is journaled with its class and due time before the wait,
    /// so a re-execution (another silo, after a crash) continues the same count and schedule.
    /// </summary>
    private async Task<(JournalRow Row, bool Live)> ExecuteStepAsync(JournalKind kind, int step, string name, StepOptions? options, RetryPolicy policy,
        Func<Exception, ErrorClass?>? classify, Func<int, Task<string>> attempt, string? argumentsHash = null)
    {
        // A live call counts towards the run's status: a run with a step executing never shows as sleeping
        // or waiting for an operator, whatever its parallel calls do.
        grain.EnterCall();
        var entered = true;
        try
        {
            await grain.RefreshStatusAsync();
            (JournalRow Row, bool Live) outcome;
            try
            {
                outcome = await ExecuteAttemptsAsync(kind, step, name, options, policy, classify, attempt, argumentsHash);
            }
            catch (StepFailedException)
            {
                // A live outcome reaches the workflow only after every outcome the journal already held.
                await _replay.DrainedAsync();
                throw;
            }

            await _replay.DrainedAsync();
            grain.ExitCall();
            entered = false;
            await grain.RefreshStatusAsync();
            return outcome;
        }
        finally
        {
            if (entered)
            {
                grain.ExitCall();
            }
        }
    }

    private async Task<(JournalRow Row, bool Live)> ExecuteAttemptsAsync(JournalKind kind, int step, string name, StepOptions? options, RetryPolicy policy,
        Func<Exception, ErrorClass?>? classify, Func<int, Task<string>> attempt, string? argumentsHash)
    {
        if (options?.Compensation is { } compensation && !grain.History.EventsOf(step).Any(e => e.Kind == JournalKind.CompensationRegistered))
        {
            // Declared before the first attempt, so the declaration is durable before any effect can happen.
            // The compensating tool's version is pinned now: a later deploy does not change what undoes this step.
            var version = compensation.Version ?? grain.Tools.TryResolve(compensation.Tool)?.Definition.Version;
            await grain.AppendAsync(JournalKind.CompensationRegistered, step, name, true,
                RunPayloads.Write(new CompensationPayload(compensation.Tool, version, compensation.Arguments)));
        }

        var escalate = options?.EscalateToOperator ?? registration.EscalateToOperator;
        var history = StepAttempts.Read(grain.History.EventsOf(step));
        var attemptNo = history.AttemptNumber;
        var failures = history.Failures;
        var firstAttemptAt = history.FirstFailureAt ?? grain.Time.GetUtcNow();
        var openSince = history.CircuitOpenSince;
        var lastEvent = history.Last;

        if (lastEvent?.Kind == JournalKind.Escalated)
        {
            // The run was waiting for an operator when its activation ended: wait again.
            await grain.AwaitOperatorAsync(step);
            grain.ThrowIfCancelRequested();
            return AfterDecision(step) ?? await ExecuteAttemptsAsync(kind, step, name, options, policy, classify, attempt, argumentsHash);
        }

        if (lastEvent?.Kind == JournalKind.AttemptFailed && RunPayloads.ReadError(lastEvent.Payload).RetryAt is { } pendingRetry)
        {
            await grain.WaitUntilAsync(pendingRetry, sleeping: false);
        }

        while (true)
        {
            grain.ThrowIfCancelRequested();
            string? payload = null;
            Exception? failure = null;
            try
            {
                payload = await attempt(attemptNo);
            }
            catch (Exception e) when (!grain.ShutdownToken.IsCancellationRequested && e is not (StorageUnavailableException or JournalConflictException or RunCancelledException))
            {
                failure = e;
            }

            if (failure is null)
            {
                // Outside the attempt: a failure to journal the outcome is never the step's failure. The append
                // rides out an outage in place; if it cannot, the activation ends and the run resumes from its journal.
                return (await grain.AppendAsync(kind, step, name, true, payload, attempt: attemptNo), true);
            }

            var errorClass = ErrorClassifier.Classify(failure, classify);
            // A call that timed out may have had its effect: recorded, so a failing run still compensates the step.
            var error = RunPayloads.ErrorOf(failure, errorClass) with { ArgumentsHash = argumentsHash, OutcomeUnknown = failure is TimeoutException };
            var now = grain.Time.GetUtcNow();
            if (failure is CircuitOpenException open)
            {
                // An open breaker is waited out, not retried: one journal row when the step first meets it,
                // none for each later look at a breaker that is still open (a failed probe in between is an
                // ordinary failed attempt), and no attempt of the policy used up. The wait has its own
                // deadline, counted from that first row, after which the step counts as exhausted.
                var since = openSince ?? now;
                if (open.RetryAfter - since <= policy.MaxCircuitWait)
                {
                    if (openSince is null)
                    {
                        await grain.AppendAsync(JournalKind.AttemptFailed, step, name, false, RunPayloads.Write(error with { RetryAt = open.RetryAfter }), attempt: attemptNo);
                        openSince = now;
                        attemptNo++;
                    }

                    await grain.WaitUntilAsync(open.RetryAfter, sleeping: false);
                    continue;
                }

                error = error with { Message = $"{error.Message} The step waited {now - since:g} for it, the most its retry policy allows (MaxCircuitWait {policy.MaxCircuitWait:g})." };
            }
            else if (errorClass == ErrorClass.Transient)
            {
                var used = failures + 1;
                var retryAt = now + policy.DelayAfter(used, WorkflowRunGrain.Jitter());
                var withinDeadline = policy.TotalDeadline is not { } deadline || retryAt - firstAttemptAt <= deadline;
                if (withinDeadline && used < policy.MaxAttempts)
                {
                    await grain.AppendAsync(JournalKind.AttemptFailed, step, name, false, RunPayloads.Write(error with { RetryAt = retryAt }), attempt: attemptNo);
                    failures = used;
                    attemptNo++;
                    await grain.WaitUntilAsync(retryAt, sleeping: false);
                    continue;
                }
            }

            var retryable = errorClass is ErrorClass.Transient or ErrorClass.CircuitOpen;

            var exhausted = retryable;
            if (exhausted && escalate)
            {
                await grain.EscalateAsync(kind, step, name, error with { Exhausted = true, Step = step, StepName = name, StepKind = kind.ToString() }, attemptNo);
                grain.ThrowIfCancelRequested();
                return AfterDecision(step) ?? await ExecuteAttemptsAsync(kind, step, name, options, policy, classify, attempt, argumentsHash);
            }

            await grain.AppendAsync(kind, step, name, false, RunPayloads.Write(error with { Exhausted = exhausted }), attempt: attemptNo);
            throw new StepFailedException(RunId, step, name, error.Kind, error.Message, error.ExceptionType, errorClass.Name(), attemptNo, exhausted);
        }
    }

    /// <summary>After a skip or fail decision the step has its outcome row; after a retry it has none and runs again.</summary>
    private (JournalRow Row, bool Live)? AfterDecision(int step)
    {
        if (!grain.TryGetOutcome(step, out var row))
        {
            return null;
        }

        Unwrap(row);
        return (row, false);
    }

    private async Task<string> InvokeToolAsync(string tool, JsonElement arguments, string? version, int step, int attempt)
    {
        var registered = grain.Tools.Resolve(tool, version ?? _pinnedTools.GetValueOrDefault(tool));
        if (arguments.ValueKind == JsonValueKind.Undefined)
        {
            throw new InvalidPayloadException($"arguments of tool '{tool}'", "no JSON value was given");
        }

        RunPayloads.CheckSize(arguments.GetRawText(), $"arguments of tool '{tool}'", grain.Options.MaxPayloadBytes);
        registered.ValidateInput(arguments);

        var definition = registered.Definition;
        var breaker = definition.Breaker ?? grain.Options.Breaker;
        var (permit, retryAt) = await grain.Breakers.AcquireAsync(tool, breaker);
        if (permit == BreakerPermit.Rejected)
        {
            throw new CircuitOpenException(tool, retryAt);
        }

        JsonElement output;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(grain.ShutdownToken);
            if (definition.Timeout is { } limit)
            {
                timeout.CancelAfter(limit);
            }

            try
            {
                output = await registered.Tool.InvokeAsync(arguments, new ToolContext(RunId, step, IdempotencyKey(step), timeout.Token, attempt));
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !grain.ShutdownToken.IsCancellationRequested)
            {
                throw new TimeoutException($"Tool '{tool}' {definition.Version} did not answer within {definition.Timeout} (attempt {attempt}).");
            }

            RunPayloads.CheckSize(output.GetRawText(), $"output of tool '{tool}'", grain.Options.MaxPayloadBytes);
            registered.ValidateOutput(output);
        }
        catch (Exception e) when (!grain.ShutdownToken.IsCancellationRequested)
        {
            // Only failures that say something about the tool's health move its breaker.
            var healthy = ErrorClassifier.Classify(e, definition.ClassifyError) != ErrorClass.Transient;
            await ReportAsync(tool, permit, healthy);
            throw;
        }

        await ReportAsync(tool, permit, true);
        _pinnedTools[tool] = definition.Version;
        return RunPayloads.Write(new ToolPayload(definition.Version, arguments, output));
    }

    private async Task ReportAsync(string tool, BreakerPermit permit, bool success)
    {
        if (permit == BreakerPermit.Probe)
        {
            await grain.Breakers.ReportProbeAsync(tool, success);
        }
        else
        {
            grain.Breakers.Record(tool, success);
        }
    }

    private JsonElement ReadToolOutput(string tool, string payload)
    {
        using var document = JsonDocument.Parse(payload);
        if (document.RootElement.TryGetProperty("version", out var version) && version.GetString() is { } pinned)
        {
            _pinnedTools[tool] = pinned;
        }

        return document.RootElement.GetProperty("output").Clone();
    }

    private async Task<T> RecordValueAsync<T>(JournalKind kind, string name, Func<T> produce, Func<T, string> format, Func<string, T> parse)
    {
        var (step, recorded) = Next(kind, name);
        if (recorded is not null)
        {
            await _replay.TurnAsync(step);
            return parse(JsonSerializer.Deserialize<string>(recorded.Payload!)!);
        }

        var value = produce();
        await grain.AppendAsync(kind, step, name, true, RunPayloads.Write(format(value)));
        await _replay.DrainedAsync();
        return value;
    }

    private (int Step, JournalRow? Recorded) Next(JournalKind kind, string name, JsonElement arguments = default, string? argumentsHash = null)
    {
        try
        {
            return NextCore(kind, name, arguments, argumentsHash);
        }
        catch (NonDeterminismException e)
        {
            // Parallel branches parked for their turn end with the run's error instead of waiting for ever.
            _replay.Poison(e);
            throw;
        }
    }

    private (int Step, JournalRow? Recorded) NextCore(JournalKind kind, string name, JsonElement arguments, string? argumentsHash)
    {
        // An activation that is shutting down starts no new step: the next activation will.
        grain.ShutdownToken.ThrowIfCancellationRequested();

        // Names are stored cleaned (see RunPayloads.Clean); compare like with like.
        name = RunPayloads.Clean(name);
        var step = ++_step;
        if (grain.TryGetOutcome(step, out var row))
        {
            if (row.Kind != kind || row.Name != name)
            {
                throw new NonDeterminismException(RunId, step, $"{row.Kind} '{row.Name}'", $"{kind} '{name}'");
            }

            // The same tool with other arguments is another call (a reordered or edited call site).
            if (argumentsHash is not null && RecordedArguments(row) is { } recorded && recorded.Hash != argumentsHash)
            {
                throw new NonDeterminismException(RunId, step, $"{row.Kind} '{row.Name}' with arguments {recorded.Text}", $"{kind} '{name}' with arguments {Shorten(arguments.GetRawText())}");
            }

            return (step, row);
        }

        // The journal may hold attempts or an escalation of this step but no outcome: check those match too.
        if (grain.History.EventsOf(step).FirstOrDefault(e => e.Kind is JournalKind.AttemptFailed or JournalKind.Escalated) is { } started)
        {
            if (started.Name != name)
            {
                throw new NonDeterminismException(RunId, step, $"attempts of '{started.Name}'", $"{kind} '{name}'");
            }

            if (argumentsHash is not null && RunPayloads.ReadError(started.Payload).ArgumentsHash is { } attempted && attempted != argumentsHash)
            {
                throw new NonDeterminismException(RunId, step, $"attempts of '{started.Name}' with arguments hashing to {attempted[..12]}",
                    $"{kind} '{name}' with arguments {Shorten(arguments.GetRawText())} (hashing to {argumentsHash[..12]})");
            }
        }

        // The first unrecorded step is a step boundary: a pending cancel takes effect here.
        grain.ThrowIfCancelRequested();
        return (step, null);
    }

    private string IdempotencyKey(int step) => $"{RunId}/{step}";

    /// <summary>The arguments a recorded tool outcome was called with (null when not recorded, as for a step an operator skipped).</summary>
    private static (string Hash, string Text)? RecordedArguments(JournalRow row)
    {
        if (row.Kind != JournalKind.Tool || row.Payload is null)
        {
            return null;
        }

        if (!row.Ok)
        {
            return RunPayloads.ReadError(row.Payload).ArgumentsHash is { } hash ? (hash, $"hashing to {hash[..12]}") : null;
        }

        using var document = JsonDocument.Parse(row.Payload);
        return document.RootElement.TryGetProperty("input", out var input) && input.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined)
            ? (RunPayloads.ArgumentsHash(input), Shorten(input.GetRawText()))
            : null;
    }

    private static string Shorten(string text) => text.Length <= 200 ? text : text[..200] + "…";

    /// <summary>Returns the payload of a successful row, or throws the recorded failure exactly as the first execution saw it.</summary>
    private string Unwrap(JournalRow row)
    {
        if (row.Ok)
        {
            return row.Payload!;
        }

        var error = RunPayloads.ReadError(row.Payload);
        throw new StepFailedException(RunId, row.Step!.Value, row.Name, error.Kind, error.Message, error.ExceptionType,
            error.Class ?? ErrorClass.Terminal.Name(), row.Attempt ?? 1, error.Exhausted);
    }

    private T Deserialize<T>(string json, int step, string name)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, SpineJson.Options)!;
        }
        catch (Exception e) when (e is JsonException or NotSupportedException)
        {
            throw new NonDeterminismException(RunId, step, $"Step '{name}' with a result that does not read as {typeof(T).Name} ({e.Message})", $"Step '{name}' returning {typeof(T).Name}");
        }
    }

    private sealed record ToolPayload(string Version, JsonElement Input, JsonElement Output);

    /// <summary>What a step's journaled events say about its attempts, read in one pass.</summary>
    private sealed record StepAttempts(int AttemptNumber, int Failures, DateTimeOffset? FirstFailureAt, DateTimeOffset? CircuitOpenSince, JournalRow? Last)
    {
        /// <summary>
        /// Reads the events since the last operator decision (a decision resets the retry budget): the next
        /// attempt's number (over all events), the failures that count against the policy, when the first of
        /// them happened, and when the step first met an open breaker, if it did.
        /// </summary>
        public static StepAttempts Read(IReadOnlyList<JournalRow> events)
        {
            var attempts = 0;
            var reset = -1;
            for (var i = 0; i < events.Count; i++)
            {
                attempts += events[i].Kind is JournalKind.AttemptFailed or JournalKind.Escalated ? 1 : 0;
                reset = events[i].Kind == JournalKind.OperatorDecided ? i : reset;
            }

            var failures = 0;
            DateTimeOffset? first = null;
            DateTimeOffset? openSince = null;
            for (var i = reset + 1; i < events.Count; i++)
            {
                if (events[i].Kind != JournalKind.AttemptFailed)
                {
                    continue;
                }

                first ??= events[i].RecordedAt;
                if (RunPayloads.ReadError(events[i].Payload).Class == ErrorClass.CircuitOpen.Name())
                {
                    openSince ??= events[i].RecordedAt;
                }
                else
                {
                    failures++;
                }
            }

            return new StepAttempts(attempts + 1, failures, first, openSince, reset + 1 < events.Count ? events[^1] : null);
        }
    }
}
