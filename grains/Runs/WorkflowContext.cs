using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Spine.Errors;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Recovery;
using Spine.Replay;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Runs;

/// <summary>
/// The journaling context of one execution of a run. Step numbers count the workflow's context calls
/// from 1, in the order they are issued; a recorded step is answered from the journal after checking that
/// the workflow asks for the same kind, name and arguments. Every call goes through the step pipeline
/// (<see cref="StepPipeline"/>): replayed, or run live with retries, its outcome durable before the
/// workflow sees it.
/// </summary>
internal sealed class WorkflowContext(IStepRun run, StepPipeline pipeline, ReplayOrder replay, WorkflowRegistration registration, RunState state, ToolRegistry tools, IServiceProvider services)
    : IWorkflowContext
{
    private readonly Dictionary<string, string> _pinnedTools = new(StringComparer.Ordinal);
    private int _step;

    public string RunId => run.RunId;

    public string WorkflowType => registration.Name;

    public int WorkflowVersion => registration.Version;

    public string? AccountId => state.AccountId;

    public bool IsReplaying => run.TryGetOutcome(_step + 1, out _);

    public RunOrigin? Origin => state.Origin;

    public Identity.SpineActor? StartedBy => state.StartedBy;

    public string? GetParameter(string name) => state.Parameters?.GetValueOrDefault(name);

    public async Task<T> RunAsync<T>(string name, Func<StepContext, Task<T>> action, StepOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(action);
        var (step, recorded) = Next(JournalKind.Step, name);
        T result = default!;
        var outcome = await pipeline.RunAsync(Call(JournalKind.Step, step, name, recorded, options, options?.Retry ?? run.Options.Retry.Step, options?.ClassifyError) with
        {
            Execute = async attempt =>
            {
                var value = await action(new StepContext(RunId, step, name, IdempotencyKey(step), attempt.Cancellation, attempt.Number));
                var json = JsonSerializer.Serialize(value, SpineJson.Options);
                RunPayloads.CheckSize(json, $"result of step {step} '{name}'", run.Options.MaxPayloadBytes);

                // The workflow gets the value as the journal will give it back on replay, never the live object:
                // a type that does not survive the round trip fails here, on the first execution, not after a crash.
                result = JsonSerializer.Deserialize<T>(json, SpineJson.Options)!;
                return json;
            },
        }, run);

        // A replayed or skipped step's result comes from the journal, not from the action.
        var payload = Unwrap(Row(outcome));
        return outcome.Executed ? result : Deserialize<T>(payload, step, name);
    }

    public string? ToolVersion(string tool)
    {
        ArgumentException.ThrowIfNullOrEmpty(tool);
        return TryResolve(tool, null)?.Definition.Version;
    }

    /// <summary>
    /// The version a call of <paramref name="tool"/> names: the one asked for, else the one this run pinned at its first
    /// call, else the newest its policy permits (null: the newest registered).
    /// </summary>
    private string? VersionFor(string tool, string? asked) =>
        asked ?? _pinnedTools.GetValueOrDefault(tool) ?? services.GetRequiredService<Policies.PolicyEngine>().SelectVersion(WorkflowType, StartedBy, tool, tools.VersionsOf(tool));

    private Tools.RegisteredTool? TryResolve(string tool, string? asked)
    {
        try
        {
            return tools.Resolve(tool, VersionFor(tool, asked));
        }
        catch (UnknownToolException)
        {
            return null;
        }
    }

    public async Task<JsonElement> CallToolAsync(string tool, JsonElement arguments, string? version = null, StepOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(tool);

        // A call that needs a human's approval (its tool, a policy, or its confidence) asks first, as a step of its own.
        // Whenever the journal holds anything at that step, it decides (see ApprovalFor): an approval it asked, decided
        // or still pending, is asked again exactly as then. Only a call the journal has not reached is decided by
        // today's definition, policies and call counts.
        var approvalStep = _step + 1;
        var request = ApprovalFor(approvalStep, tool, arguments, version, options);
        if (request is not null)
        {
            var decision = await RequestApprovalAsync(request);
            if (!decision.Approved)
            {
                throw new ToolCallRejectedException(RunId, approvalStep, tool, decision.TimedOut, decision.Actor?.Id, decision.Comment);
            }
        }

        var argumentsHash = arguments.ValueKind == JsonValueKind.Undefined ? null : RunPayloads.ArgumentsHash(arguments);
        var (step, recorded) = Next(JournalKind.Tool, tool, arguments, argumentsHash);
        var newest = recorded is null ? TryResolve(tool, version) : null;
        var policy = options?.Retry ?? newest?.Definition.Retry ?? run.Options.Retry.Tool;
        var outcome = await pipeline.RunAsync(Call(JournalKind.Tool, step, tool, recorded, options, policy, options?.ClassifyError ?? newest?.Definition.ClassifyError) with
        {
            ArgumentsHash = argumentsHash,
            AllowedTools = options?.AllowedTools,
            Tool = new ToolCall(tool, arguments, () => VersionFor(tool, version)),
            Execute = async attempt =>
            {
                var registered = attempt.Tool!;
                var output = await services.GetRequiredService<Secrets.SecretfulInvoker>().InvokeAsync(registered.Tool, arguments,
                    secrets => new ToolContext(RunId, step, IdempotencyKey(step), attempt.Cancellation, attempt.Number, secrets),
                    options?.ClassifyError, attempt.Cancellation);
                RunPayloads.CheckSize(output.GetRawText(), $"output of tool '{tool}'", run.Options.MaxPayloadBytes);
                registered.ValidateOutput(output);
                return RunPayloads.Write(new ToolPayload(registered.Definition.Version, arguments, output));
            },
        }, run);
        return ReadToolOutput(tool, Unwrap(Row(outcome)));
    }

    public async Task<ChatResponse> CallModelAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, string? clientKey = null, StepOptions? step = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var stepOptions = step;
        var name = clientKey ?? "model";
        var (number, recorded) = Next(JournalKind.Model, name);
        var history = recorded is null ? messages.ToList() : null;
        var outcome = await pipeline.RunAsync(Call(JournalKind.Model, number, name, recorded, stepOptions, stepOptions?.Retry ?? run.Options.Retry.Model, stepOptions?.ClassifyError) with
        {
            ChatClient = clientKey,
            Model = history is null ? null : new ModelRequest(history, options),
            Execute = async attempt =>
            {
                // The client the stages settled on (a budget may have passed on a cheaper one).
                var key = attempt.Call.ChatClient;
                var client = (key is null
                        ? services.GetService<IChatClient>()
                        : services.GetKeyedService<IChatClient>(key))
                    ?? throw new TerminalException($"No chat client{(key is null ? "" : $" '{key}'")} is registered on this silo.");

                // The OpenTelemetry GenAI conventions (operation, model, tokens), as Microsoft.Extensions.AI writes them; no message content.
                client = Telemetry.ModelTelemetry.Wrap(client);
                var response = await client.GetResponseAsync(history!, attempt.Call.Model?.Options ?? options, attempt.Cancellation);
                // A model never sees a secret; one that guessed or was told one does not get it into the journal.
                var payload = services.GetRequiredService<Secrets.SecretRedactor>().Redact(JsonSerializer.Serialize(response, SpineJson.ModelOptions));
                RunPayloads.CheckSize(payload, $"response of model '{name}'", run.Options.MaxPayloadBytes);
                return payload;
            },
        }, run);
        return JsonSerializer.Deserialize<ChatResponse>(Unwrap(Row(outcome)), SpineJson.ModelOptions)!;
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
            if (replay.Holds(step))
            {
                // The journal says where this sleep ended among the other calls (or, in a format 1 journal,
                // where it began, which is where it ended for a sequential workflow).
                await replay.TurnAsync(step);
                if (state.JournalFormat >= 2 || wakeAt <= run.Time.GetUtcNow())
                {
                    return;
                }
            }
        }
        else
        {
            wakeAt = run.Time.GetUtcNow() + duration;
        }

        // A sleep is a durable wait, not an attempt: it has no retries, breaker or timeout to pass through.
        run.EnterCall();
        try
        {
            if (recorded is null)
            {
                await run.AppendAsync(JournalKind.Timer, step, "sleep", true, RunPayloads.Write(new { wakeAt }));
            }

            await run.WaitUntilAsync(wakeAt, Waits.WaitKind.Sleep);
            if (state.JournalFormat >= 2)
            {
                // The sleep ends live, after everything the journal already holds; its end is journaled so that
                // a replay orders it among parallel calls exactly as it happened.
                await replay.DrainedAsync();
                await run.AppendAsync(JournalKind.TimerFired, step, "sleep", true, null);
            }
        }
        finally
        {
            run.ExitCall();
        }
    }

    public async Task<T> WaitForSignalAsync<T>(string name, TimeSpan timeout)
    {
        Signals.SignalInbox.CheckName(name);
        if (timeout != Timeout.InfiniteTimeSpan)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(timeout, TimeSpan.Zero);
        }

        var (step, recorded) = Next(JournalKind.Signal, name);
        if (recorded is not null)
        {
            // Delivered (or timed out) before: the journal says with what, and where among parallel calls.
            await replay.TurnAsync(step);
            return ReadSignal<T>(recorded, step);
        }

        // A wait that began before this execution keeps its deadline.
        var awaited = run.EventsOf(step).LastOrDefault(e => e.Kind == JournalKind.SignalAwaited);
        var now = run.Time.GetUtcNow();
        var deadline = awaited is not null
            ? RunPayloads.Read<Signals.SignalAwaitedPayload>(awaited.Payload).Deadline
            : timeout == Timeout.InfiniteTimeSpan || timeout >= DateTimeOffset.MaxValue - now ? null : now + timeout;

        // A wait, not an attempt: no retries, breaker or timeout to pass through.
        run.EnterCall();
        try
        {
            var signal = await run.AwaitSignalAsync(step, name, deadline, recordDeadline: awaited is null);

            // The outcome is journaled live, after everything the journal already holds, so that a replay hands
            // it out exactly where it happened among parallel calls.
            await replay.DrainedAsync();
            var received = signal is null ? null : RunPayloads.Read<Signals.SignalPayload>(signal.Payload);
            var outcome = received is null
                ? new Signals.SignalOutcomePayload(null, null, null, deadline)
                : new Signals.SignalOutcomePayload(received.Id, received.Payload, received.Actor);
            var row = await run.AppendAsync(JournalKind.Signal, step, name, signal is not null, RunPayloads.Write(outcome));
            return ReadSignal<T>(row, step);
        }
        finally
        {
            run.ExitCall();
        }
    }

    public async Task<Approvals.ApprovalDecision> RequestApprovalAsync(Approvals.ApprovalRequest request)
    {
        Approvals.ApprovalGate.Check(request, run.Options.MaxPayloadBytes);
        var (step, recorded) = Next(JournalKind.Approval, request.Name);
        if (recorded is not null)
        {
            await replay.TurnAsync(step);
            return Approvals.ApprovalGate.Read(RunId, recorded, request);
        }

        // A wait, not an attempt: it journals its request, waits for a decision or its deadline, and journals the outcome.
        run.EnterCall();
        try
        {
            return Approvals.ApprovalGate.Read(RunId, await Approvals.ApprovalGate.AwaitAsync(run, step, request, replay.DrainedAsync), request);
        }
        finally
        {
            run.ExitCall();
        }
    }

    public Task<DateTimeOffset> NowAsync() =>
        RecordValueAsync(JournalKind.Time, "now", () => run.Time.GetUtcNow(),
            v => v.ToString("O", CultureInfo.InvariantCulture), s => DateTimeOffset.Parse(s, CultureInfo.InvariantCulture));

    public Task<long> RandomAsync() =>
        RecordValueAsync(JournalKind.Random, "random", () => BitConverter.ToInt64(RandomNumberGenerator.GetBytes(8)),
            v => v.ToString(CultureInfo.InvariantCulture), s => long.Parse(s, CultureInfo.InvariantCulture));

    public Task<Guid> NewGuidAsync() =>
        RecordValueAsync(JournalKind.Random, "guid", Guid.NewGuid, v => v.ToString("D"), Guid.Parse);

    private StepCall Call(JournalKind kind, int step, string name, JournalRow? recorded, StepOptions? options, RetryPolicy retry, Func<Exception, ErrorClass?>? classify) => new()
    {
        Kind = kind,
        Step = step,
        Name = RunPayloads.Clean(name),
        Recorded = recorded,
        Replay = replay,
        Retry = retry,
        Classify = classify,
        EscalateToOperator = options?.EscalateToOperator ?? registration.EscalateToOperator,
        Compensation = options?.Compensation,
        Timeout = options?.Timeout is { } timeout && (timeout <= TimeSpan.Zero || timeout > Timeouts.TimeoutStage.MaxTimeout)
            ? throw new ArgumentOutOfRangeException(nameof(options), timeout, $"StepOptions.Timeout of step {step} '{name}' must be positive and at most {Timeouts.TimeoutStage.MaxTimeout}.")
            : options?.Timeout,
        Execute = _ => throw new InvalidOperationException($"Step {step} '{name}' has nothing to execute."),
    };

    /// <summary>The journal row of an outcome: every outcome that reaches the workflow is journaled first.</summary>
    private JournalRow Row(StepOutcome outcome) =>
        outcome.Row ?? throw new InvalidOperationException($"Run {RunId}: a step pipeline stage returned an outcome it did not journal.");

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
        var outcome = await pipeline.RunAsync(Call(kind, step, name, recorded, null, RetryPolicy.None, null) with
        {
            Instant = true,
            EscalateToOperator = false,
            Execute = _ => Task.FromResult(RunPayloads.Write(format(produce()))),
        }, run);
        return parse(JsonSerializer.Deserialize<string>(Unwrap(Row(outcome)))!);
    }

    /// <summary>
    /// The approval a tool call asks for first, at <paramref name="step"/>, or null. When the journal reached that
    /// step it decides: the approval it asked there, rebuilt as asked; nothing, when the rows there are the call's own
    /// (a recorded outcome, failed attempts, a denial). Rows of another call there are non-determinism.
    /// </summary>
    private Approvals.ApprovalRequest? ApprovalFor(int step, string tool, JsonElement arguments, string? version, StepOptions? options)
    {
        try
        {
            if (Approvals.ToolApprovals.Journaled(run, step, tool, arguments) is { } asked)
            {
                return asked;
            }

            var own = RunPayloads.Clean(tool);
            var outcome = run.TryGetOutcome(step, out var row) ? row : null;
            var events = run.EventsOf(step);
            if (outcome is not null || events.Count > 0)
            {
                if ((outcome is { } o && o.Name != own ? o : events.FirstOrDefault(e => e.Name != own)) is { } other)
                {
                    throw new NonDeterminismException(RunId, step, $"{other.Kind} '{other.Name}'", $"{JournalKind.Tool} '{own}'");
                }

                return null;
            }
        }
        catch (NonDeterminismException e)
        {
            // As in Next: parallel branches parked for their turn end with the run's error instead of waiting for ever.
            replay.Poison(e);
            throw;
        }

        var approvals = services.GetRequiredService<Approvals.ToolApprovals>();
        return approvals.For(run, tool, VersionFor(tool, version), arguments, options?.AllowedTools, options?.Confidence) is { } need
            ? Approvals.ToolApprovals.Request(tool, arguments, options?.Confidence, need)
            : null;
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
            replay.Poison(e);
            throw;
        }
    }

    private (int Step, JournalRow? Recorded) NextCore(JournalKind kind, string name, JsonElement arguments, string? argumentsHash)
    {
        // An activation that is shutting down starts no new step: the next activation will.
        run.Stopping.ThrowIfCancellationRequested();

        // Names are stored cleaned (see RunPayloads.Clean); compare like with like.
        name = RunPayloads.Clean(name);
        var step = ++_step;
        if (run.TryGetOutcome(step, out var row))
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

        // The journal may hold attempts, a rate-limited wait or an escalation of this step but no outcome: check those match too.
        var events = run.EventsOf(step);
        if (events.FirstOrDefault(e => e.Kind is JournalKind.AttemptFailed or JournalKind.Escalated or JournalKind.SignalAwaited or JournalKind.RateLimited) is { } started
            && (started.Name != name || (started.Kind == JournalKind.SignalAwaited) != (kind == JournalKind.Signal)))
        {
            throw new NonDeterminismException(RunId, step, $"{(started.Kind == JournalKind.SignalAwaited ? "a wait for signal" : "attempts of")} '{started.Name}'", $"{kind} '{name}'");
        }

        if (events.FirstOrDefault(e => e.Kind is JournalKind.AttemptFailed or JournalKind.Escalated) is { } failed)
        {
            if (argumentsHash is not null && RunPayloads.ReadError(failed.Payload).ArgumentsHash is { } attempted && attempted != argumentsHash)
            {
                throw new NonDeterminismException(RunId, step, $"attempts of '{failed.Name}' with arguments hashing to {attempted[..12]}",
                    $"{kind} '{name}' with arguments {Shorten(arguments.GetRawText())} (hashing to {argumentsHash[..12]})");
            }
        }

        // The first unrecorded step is a step boundary: a pending cancel takes effect here.
        run.ThrowIfCancelRequested();
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
        if (error.Kind == Policies.PolicyDenials.Kind && run.EventsOf(row.Step!.Value).LastOrDefault(e => e.Kind == JournalKind.PolicyDenied) is { } denied)
        {
            var denial = RunPayloads.Read<Policies.PolicyDeniedPayload>(denied.Payload);
            throw new PolicyDeniedException(RunId, row.Step.Value, row.Name, denial.Rule, denial.Reason);
        }

        if (error.Kind == Budgets.BudgetRefusals.Kind && run.EventsOf(row.Step!.Value).LastOrDefault(e => e.Kind == JournalKind.BudgetRefused) is { } refused)
        {
            var refusal = RunPayloads.Read<Budgets.BudgetRefusedPayload>(refused.Payload);
            throw new BudgetExhaustedException(RunId, row.Step.Value, row.Name, refusal.Scope, refusal.Reason);
        }

        if (InFlightCancel.Is(row))
        {
            // The run's cancel reached this call in flight (see RetryStage): the workflow sees the cancel, as at any other call.
            throw new RunCancelledException(RunId, state.CancelReason);
        }

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

    private T ReadSignal<T>(JournalRow row, int step)
    {
        var outcome = RunPayloads.Read<Signals.SignalOutcomePayload>(row.Payload);
        if (!row.Ok)
        {
            throw new SignalTimeoutException(RunId, step, row.Name, outcome.Deadline ?? row.RecordedAt);
        }

        if (outcome.Payload is not { } payload)
        {
            return default!;
        }

        try
        {
            return payload.Deserialize<T>(SpineJson.Options)!;
        }
        catch (Exception e) when (e is JsonException or NotSupportedException)
        {
            // The sender's mistake, not a code change: typed, and the same on every re-execution.
            throw new InvalidPayloadException($"signal '{row.Name}' received at step {step}", $"its payload does not read as {typeof(T).Name}: {e.Message}");
        }
    }

    private sealed record ToolPayload(string Version, JsonElement Input, JsonElement Output);
}
