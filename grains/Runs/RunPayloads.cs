using System.Text;
using System.Text.Json;
using Spine.Errors;
using Spine.Identity;
using Spine.Workflows;

namespace Spine.Runs;

/// <summary>
/// What a run's first journal row records. <see cref="JournalFormat"/> 2 journals record when each sleep
/// ended (<see cref="Journal.JournalKind.TimerFired"/>); rows written before it carry no value and read as 1.
/// <see cref="StartedBy"/> is who started the run (covered by the row's hash).
/// </summary>
internal sealed record StartedPayload(
    string WorkflowType,
    int WorkflowVersion,
    string? AccountId,
    string? IdempotencyKey,
    JsonElement Input,
    IReadOnlyDictionary<string, string>? Parameters = null,
    RunOrigin? Origin = null,
    int JournalFormat = 1,
    SpineActor? StartedBy = null,
    Budgets.RunBudget? Budget = null,
    string? TraceParent = null);

/// <summary>A recorded failure: of an attempt, a step, a compensation or a run.</summary>
internal sealed record ErrorPayload(
    string Kind,
    string Message,
    string? ExceptionType,
    string? Class = null,
    DateTimeOffset? RetryAt = null,
    bool Exhausted = false,
    int? Step = null,
    string? StepName = null,
    string? StepKind = null,
    string? ArgumentsHash = null,
    bool OutcomeUnknown = false);

/// <summary>An operator's decision as journaled: who made it (<see cref="Actor"/>; journals before actors hold a free-text <see cref="Operator"/>).</summary>
internal sealed record DecisionPayload(OperatorAction Action, string? Reason, string? Operator, SpineActor? Actor = null);

/// <summary>How a compensating run ends once its compensations are done.</summary>
internal sealed record CompensationPlan(RunStatus Status, ErrorPayload? Error, bool DeadLetter);

/// <summary>A registered compensation.</summary>
internal sealed record CompensationPayload(string Tool, string? Version, JsonElement Arguments);

/// <summary>The JSON shapes of journal payloads that the runtime itself reads back.</summary>
internal static class RunPayloads
{
    public static string Write<T>(T value) => JsonSerializer.Serialize(value, SpineJson.Options);

    public static T Read<T>(string? payload) =>
        JsonSerializer.Deserialize<T>(payload ?? "null", SpineJson.Options) ?? throw new JsonException($"A journal payload of {typeof(T).Name} is empty.");

    public static ErrorPayload ReadError(string? payload) =>
        payload is null ? new ErrorPayload("terminal", "no error recorded", null) : Read<ErrorPayload>(payload);

    public static ErrorPayload ErrorOf(Exception e, ErrorClass errorClass) =>
        new(e is SpineException spine ? spine.Kind : errorClass == ErrorClass.Transient ? "transient" : "terminal",
            e.Message, e.GetType().FullName, errorClass.Name());

    public static RunError ToRunError(this ErrorPayload error) =>
        new(error.Kind, error.Message, error.Step, error.StepName, error.ExceptionType);

    public static ErrorPayload ToPayload(this RunError error) =>
        new(error.Kind, error.Message, error.ExceptionType, Step: error.Step, StepName: error.StepName);

    /// <summary>A reason, and who gave it when an actor did (journals before actors hold the reason alone).</summary>
    public static string Reason(string? reason, SpineActor? actor = null) => actor is null ? Write(new { reason }) : Write(new { reason, actor });

    /// <summary>
    /// SHA-256 (hex) of a call's arguments in a canonical form (object members sorted by name, no
    /// whitespace), so that the same arguments hash alike however they were spelled.
    /// </summary>
    public static string ArgumentsHash(JsonElement arguments)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            WriteCanonical(writer, arguments);
        }

        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(buffer.ToArray()));
    }

    private static void WriteCanonical(Utf8JsonWriter writer, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var property in element.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(property.Name);
                    WriteCanonical(writer, property.Value);
                }

                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in element.EnumerateArray())
                {
                    WriteCanonical(writer, item);
                }

                writer.WriteEndArray();
                break;
            case JsonValueKind.Undefined:
                writer.WriteNullValue();
                break;
            default:
                element.WriteTo(writer);
                break;
        }
    }

    /// <summary>PostgreSQL text cannot hold U+0000 (a model may send it in a tool name): replaced before hashing and storing.</summary>
    [return: System.Diagnostics.CodeAnalysis.NotNullIfNotNull(nameof(text))]
    public static string? Clean(string? text) => text is not null && text.Contains('\0', StringComparison.Ordinal) ? text.Replace('\0', '\uFFFD') : text;

    public static string? ReadReason(string? payload)
    {
        if (payload is null)
        {
            return null;
        }

        using var document = JsonDocument.Parse(payload);
        return document.RootElement.TryGetProperty("reason", out var reason) ? reason.GetString() : null;
    }

    /// <summary>Checks JSON validity and the size ceiling of a payload about to be accepted.</summary>
    public static JsonElement CheckJson(string json, string what, int maxBytes)
    {
        CheckSize(json, what, maxBytes);
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new InvalidPayloadException(what, $"not valid JSON: {e.Message}");
        }
    }

    public static void CheckSize(string json, string what, int maxBytes)
    {
        // Cheap upper bound first: a UTF-8 encoding never exceeds 3 bytes per UTF-16 unit.
        if ((long)json.Length * 3 <= maxBytes)
        {
            return;
        }

        var size = Encoding.UTF8.GetByteCount(json);
        if (size > maxBytes)
        {
            throw new PayloadTooLargeException(what, size, maxBytes);
        }
    }
}
