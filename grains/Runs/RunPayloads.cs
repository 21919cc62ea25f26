using System.Text;
using System.Text.Json;
using Spine.Errors;
using Spine.Runs;

namespace Spine.Runs;

/// <summary>The JSON shapes of journal payloads that the runtime itself reads back.</summary>
internal static class RunPayloads
{
    public static string Started(StartRunRequest request, int version)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("workflowType", request.WorkflowType);
            writer.WriteNumber("workflowVersion", version);
            writer.WriteString("accountId", request.AccountId);
            writer.WriteString("idempotencyKey", request.IdempotencyKey);
            writer.WritePropertyName("input");
            writer.WriteRawValue(request.InputJson, skipInputValidation: false);
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    public static (string Type, int Version, string? Account, string? Key, string Input) ReadStarted(string payload)
    {
        using var document = JsonDocument.Parse(payload);
        var root = document.RootElement;
        return (
            root.GetProperty("workflowType").GetString()!,
            root.GetProperty("workflowVersion").GetInt32(),
            root.GetProperty("accountId").GetString(),
            root.GetProperty("idempotencyKey").GetString(),
            root.GetProperty("input").GetRawText());
    }

    public static string Error(string kind, string message, string? exceptionType) =>
        JsonSerializer.Serialize(new ErrorPayload(kind, message, exceptionType), Workflows.SpineJson.Options);

    public static ErrorPayload ReadError(string? payload) =>
        payload is null
            ? new ErrorPayload("terminal", "no error recorded", null)
            : JsonSerializer.Deserialize<ErrorPayload>(payload, Workflows.SpineJson.Options) ?? new ErrorPayload("terminal", "no error recorded", null);

    public static string Reason(string? reason) =>
        JsonSerializer.Serialize(new { reason }, Workflows.SpineJson.Options);

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
    public static void CheckJson(string json, string what, int maxBytes)
    {
        CheckSize(json, what, maxBytes);
        try
        {
            using var _ = JsonDocument.Parse(json);
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

    internal sealed record ErrorPayload(string Kind, string Message, string? ExceptionType);
}
