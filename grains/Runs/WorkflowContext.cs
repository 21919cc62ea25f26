using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Spine.Errors;
using Spine.Journal;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Runs;

/// <summary>
/// The journaling context of one execution of a run. Step numbers count the workflow's context calls
/// from 1; a recorded step is answered from the journal after checking that the workflow asks for the
/// same kind and name, otherwise the call runs live and its outcome is durable before the workflow sees it.
/// </summary>
internal sealed class WorkflowContext(WorkflowRunGrain grain, WorkflowRegistration registration, RunState state) : IWorkflowContext
{
    private readonly Dictionary<string, string> _pinnedTools = new(StringComparer.Ordinal);
    private int _step;

    public string RunId => grain.RunId;

    public string WorkflowType => registration.Name;

    public int WorkflowVersion => registration.Version;

    public string? AccountId => state.AccountId;

    public bool IsReplaying => grain.TryGetStep(_step + 1, out _);

    public async Task<T> RunAsync<T>(string name, Func<StepContext, Task<T>> action)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(action);
        var (step, recorded) = Next(JournalKind.Step, name);
        if (recorded is not null)
        {
            return Deserialize<T>(Unwrap(recorded), step, name);
        }

        T result;
        try
        {
            result = await action(new StepContext(RunId, step, name, IdempotencyKey(step), grain.ShutdownToken));
        }
        catch (Exception e) when (!grain.ShutdownToken.IsCancellationRequested)
        {
            throw await RecordFailureAsync(JournalKind.Step, step, name, e);
        }

        string json;
        try
        {
            json = JsonSerializer.Serialize(result, SpineJson.Options);
            RunPayloads.CheckSize(json, $"result of step {step} '{name}'", grain.MaxPayloadBytes);
        }
        catch (Exception e) when (e is PayloadTooLargeException or NotSupportedException or JsonException)
        {
            throw await RecordFailureAsync(JournalKind.Step, step, name, e);
        }

        await grain.AppendAsync(JournalKind.Step, step, name, true, json);
        return result;
    }

    public async Task<JsonElement> CallToolAsync(string tool, JsonElement arguments, string? version = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(tool);
        var (step, recorded) = Next(JournalKind.Tool, tool);
        if (recorded is not null)
        {
            using var document = JsonDocument.Parse(Unwrap(recorded));
            _pinnedTools[tool] = document.RootElement.GetProperty("version").GetString()!;
            return document.RootElement.GetProperty("output").Clone();
        }

        RegisteredTool registered;
        JsonElement output;
        try
        {
            registered = grain.Tools.Resolve(tool, version ?? _pinnedTools.GetValueOrDefault(tool));
            if (arguments.ValueKind == JsonValueKind.Undefined)
            {
                throw new InvalidPayloadException($"arguments of tool '{tool}'", "no JSON value was given");
            }

            RunPayloads.CheckSize(arguments.GetRawText(), $"arguments of tool '{tool}'", grain.MaxPayloadBytes);
            registered.ValidateInput(arguments);
            output = await registered.Tool.InvokeAsync(arguments, new ToolContext(RunId, step, IdempotencyKey(step), grain.ShutdownToken));
            RunPayloads.CheckSize(output.GetRawText(), $"output of tool '{tool}'", grain.MaxPayloadBytes);
            registered.ValidateOutput(output);
        }
        catch (Exception e) when (!grain.ShutdownToken.IsCancellationRequested)
        {
            throw await RecordFailureAsync(JournalKind.Tool, step, tool, e);
        }

        _pinnedTools[tool] = registered.Definition.Version;
        var payload = JsonSerializer.Serialize(
            new ToolPayload(registered.Definition.Version, arguments, output), SpineJson.Options);
        await grain.AppendAsync(JournalKind.Tool, step, tool, true, payload);
        return output;
    }

    public async Task<ChatResponse> CallModelAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, string? clientKey = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var name = clientKey ?? "model";
        var (step, recorded) = Next(JournalKind.Model, name);
        if (recorded is not null)
        {
            return JsonSerializer.Deserialize<ChatResponse>(Unwrap(recorded), SpineJson.ModelOptions)!;
        }

        ChatResponse response;
        string payload;
        try
        {
            var client = clientKey is null
                ? grain.Services.GetService<IChatClient>()
                : grain.Services.GetKeyedService<IChatClient>(clientKey);
            if (client is null)
            {
                throw new InvalidOperationException($"No chat client{(clientKey is null ? "" : $" '{clientKey}'")} is registered on this silo.");
            }

            response = await client.GetResponseAsync(messages, options, grain.ShutdownToken);
            payload = JsonSerializer.Serialize(response, SpineJson.ModelOptions);
            RunPayloads.CheckSize(payload, $"response of model '{name}'", grain.MaxPayloadBytes);
        }
        catch (Exception e) when (!grain.ShutdownToken.IsCancellationRequested)
        {
            throw await RecordFailureAsync(JournalKind.Model, step, name, e);
        }

        await grain.AppendAsync(JournalKind.Model, step, name, true, payload);
        return response;
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
        }
        else
        {
            wakeAt = grain.Time.GetUtcNow() + duration;
            await grain.AppendAsync(JournalKind.Timer, step, "sleep", true, JsonSerializer.Serialize(new { wakeAt }, SpineJson.Options));
        }

        await grain.WaitUntilAsync(wakeAt);
    }

    public Task<DateTimeOffset> NowAsync() =>
        RecordValueAsync(JournalKind.Time, "now", () => grain.Time.GetUtcNow(),
            v => v.ToString("O", CultureInfo.InvariantCulture), s => DateTimeOffset.Parse(s, CultureInfo.InvariantCulture));

    public Task<long> RandomAsync() =>
        RecordValueAsync(JournalKind.Random, "random", () => BitConverter.ToInt64(RandomNumberGenerator.GetBytes(8)),
            v => v.ToString(CultureInfo.InvariantCulture), s => long.Parse(s, CultureInfo.InvariantCulture));

    public Task<Guid> NewGuidAsync() =>
        RecordValueAsync(JournalKind.Random, "guid", Guid.NewGuid, v => v.ToString("D"), Guid.Parse);

    private async Task<T> RecordValueAsync<T>(JournalKind kind, string name, Func<T> produce, Func<T, string> format, Func<string, T> parse)
    {
        var (step, recorded) = Next(kind, name);
        if (recorded is not null)
        {
            return parse(JsonSerializer.Deserialize<string>(recorded.Payload!)!);
        }

        var value = produce();
        await grain.AppendAsync(kind, step, name, true, JsonSerializer.Serialize(format(value), SpineJson.Options));
        return value;
    }

    private (int Step, JournalRow? Recorded) Next(JournalKind kind, string name)
    {
        var step = ++_step;
        if (grain.TryGetStep(step, out var row))
        {
            if (row.Kind != kind || row.Name != name)
            {
                throw new NonDeterminismException(RunId, step, $"{row.Kind} '{row.Name}'", $"{kind} '{name}'");
            }

            return (step, row);
        }

        // The first unrecorded step is a step boundary: a pending cancel takes effect here.
        grain.ThrowIfCancelRequested();
        return (step, null);
    }

    private string IdempotencyKey(int step) => $"{RunId}/{step}";

    /// <summary>Returns the payload of a successful row, or throws the recorded failure exactly as the first execution saw it.</summary>
    private string Unwrap(JournalRow row)
    {
        if (row.Ok)
        {
            return row.Payload!;
        }

        var error = RunPayloads.ReadError(row.Payload);
        throw new StepFailedException(RunId, row.Step!.Value, row.Name, error.Kind, error.Message, error.ExceptionType);
    }

    private T Deserialize<T>(string json, int step, string name)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, SpineJson.Options)!;
        }
        catch (JsonException e)
        {
            throw new NonDeterminismException(RunId, step, $"Step '{name}' with a result that does not read as {typeof(T).Name} ({e.Message})", $"Step '{name}' returning {typeof(T).Name}");
        }
    }

    private async Task<StepFailedException> RecordFailureAsync(JournalKind kind, int step, string name, Exception e)
    {
        var errorKind = e is SpineException spine ? spine.Kind : "terminal";
        var exceptionType = e.GetType().FullName;
        await grain.AppendAsync(kind, step, name, false, RunPayloads.Error(errorKind, e.Message, exceptionType));
        return new StepFailedException(RunId, step, name, errorKind, e.Message, exceptionType);
    }

    private sealed record ToolPayload(string Version, JsonElement Input, JsonElement Output);
}
