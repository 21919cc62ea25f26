using System.Text.Json.Nodes;
using NuGet.Versioning;

namespace Spine.Tools;

/// <summary>
/// Whether a tool's new contract still accepts what callers of the version before it send, and still returns what
/// they read: within one compatibility line (a major version; for 0.x a minor one, as <c>^</c> ranges take them) a
/// new version may add optional input properties and widen types, but not require a new property, drop one or narrow
/// a type; nor drop an output property or stop promising it.
/// </summary>
public static class SchemaCompatibility
{
    /// <summary>Whether <paramref name="newer"/> must keep <paramref name="older"/>'s contract: same line, neither a pre-release.</summary>
    public static bool SameLine(string older, string newer)
    {
        var (a, b) = (NuGetVersion.Parse(older), NuGetVersion.Parse(newer));
        if (a.IsPrerelease || b.IsPrerelease || a.Major != b.Major)
        {
            return false;
        }

        return a.Major > 0 || a.Minor == b.Minor;
    }

    /// <summary>What <paramref name="newer"/> breaks of <paramref name="older"/>, each as <c>input /path: what</c>; empty when compatible.</summary>
    public static IReadOnlyList<string> Breaks(ToolDefinition older, ToolDefinition newer)
    {
        ArgumentNullException.ThrowIfNull(older);
        ArgumentNullException.ThrowIfNull(newer);
        var breaks = new List<string>();
        Input(JsonNode.Parse(older.InputSchema), JsonNode.Parse(newer.InputSchema), "", breaks);
        Output(JsonNode.Parse(older.OutputSchema), JsonNode.Parse(newer.OutputSchema), "", breaks);
        return breaks;
    }

    private static void Input(JsonNode? older, JsonNode? newer, string path, List<string> breaks)
    {
        if (older is not JsonObject was || newer is not JsonObject now)
        {
            return;
        }

        var at = $"input {(path.Length == 0 ? "/" : path)}";
        if (Types(was) is { } oldTypes && (Types(now) is not { } newTypes || !oldTypes.All(t => Accepts(newTypes, t))))
        {
            breaks.Add($"{at}: the type narrowed from {string.Join("|", oldTypes)} to {string.Join("|", Types(now) ?? ["any"])}");
        }

        if (now["enum"] is JsonArray newEnum)
        {
            var kept = newEnum.Select(v => v?.ToJsonString()).ToHashSet();
            var dropped = was["enum"] is JsonArray oldEnum
                ? oldEnum.Select(v => v?.ToJsonString()).Where(v => !kept.Contains(v)).ToList()
                : ["(any value)"];
            if (dropped.Count > 0)
            {
                breaks.Add($"{at}: the allowed values no longer include {string.Join(", ", dropped)}");
            }
        }

        var oldRequired = Names(was["required"]);
        foreach (var added in Names(now["required"]).Except(oldRequired))
        {
            breaks.Add($"{at}: the property '{added}' is newly required");
        }

        var oldProperties = was["properties"] as JsonObject;
        var newProperties = now["properties"] as JsonObject;
        foreach (var (name, schema) in oldProperties ?? [])
        {
            if (newProperties is null || !newProperties.TryGetPropertyValue(name, out var replacement))
            {
                // Callers send it: the new version refuses it, or silently ignores what they mean by it.
                breaks.Add($"{at}: the property '{name}' was removed");
                continue;
            }

            Input(schema, replacement, $"{path}/{name}", breaks);
        }

        if (was["additionalProperties"] is not JsonValue && now["additionalProperties"] is JsonValue closed && closed.TryGetValue<bool>(out var open) && !open)
        {
            breaks.Add($"{at}: properties beyond those listed are no longer accepted");
        }

        Input(was["items"], now["items"], path + "/items", breaks);
        Limits(was, now, at, breaks);
    }

    private static void Limits(JsonObject was, JsonObject now, string at, List<string> breaks)
    {
        foreach (var (key, tighter) in new[] { ("maxLength", -1), ("maximum", -1), ("exclusiveMaximum", -1), ("maxItems", -1), ("minLength", 1), ("minimum", 1), ("exclusiveMinimum", 1), ("minItems", 1) })
        {
            var before = Number(was[key]);
            var after = Number(now[key]);
            if (after is { } a && (before is not { } b || (tighter < 0 ? a < b : a > b)))
            {
                breaks.Add($"{at}: {key} tightened from {before?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"} to {a.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
            }
        }

        if (now["pattern"] is JsonValue pattern && pattern.ToJsonString() != was["pattern"]?.ToJsonString())
        {
            breaks.Add($"{at}: the pattern changed to {pattern.ToJsonString()}");
        }
    }

    private static void Output(JsonNode? older, JsonNode? newer, string path, List<string> breaks)
    {
        if (older is not JsonObject was || newer is not JsonObject now)
        {
            return;
        }

        var at = $"output {(path.Length == 0 ? "/" : path)}";
        var newRequired = Names(now["required"]);
        foreach (var dropped in Names(was["required"]).Except(newRequired))
        {
            breaks.Add($"{at}: the property '{dropped}' is no longer promised");
        }

        var newProperties = now["properties"] as JsonObject;
        foreach (var (name, schema) in was["properties"] as JsonObject ?? [])
        {
            if (newProperties is null || !newProperties.TryGetPropertyValue(name, out var replacement))
            {
                breaks.Add($"{at}: the property '{name}' was removed");
                continue;
            }

            Output(schema, replacement, $"{path}/{name}", breaks);
        }

        Output(was["items"], now["items"], path + "/items", breaks);
    }

    private static List<string>? Types(JsonObject schema) => schema["type"] switch
    {
        JsonValue one when one.TryGetValue<string>(out var type) => [type],
        JsonArray many => many.Select(t => t?.GetValue<string>()).OfType<string>().ToList(),
        _ => null,
    };

    private static bool Accepts(List<string> types, string type) =>
        types.Contains(type) || (type == "integer" && types.Contains("number"));

    private static HashSet<string> Names(JsonNode? node) =>
        node is JsonArray array ? array.Select(n => n?.GetValue<string>()).OfType<string>().ToHashSet(StringComparer.Ordinal) : [];

    private static double? Number(JsonNode? node) =>
        node is JsonValue value && value.TryGetValue<double>(out var number) ? number : null;
}
