using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Spine.Hosting;
using Spine.Storage;

namespace Spine.Tools;

/// <summary>What a silo does when in-flight runs pinned a tool version it does not register.</summary>
public enum MissingPinnedVersions
{
    /// <summary>Refuse to start, naming each version and the runs that pin it (the default).</summary>
    Refuse,

    /// <summary>
    /// Start, and log the versions and runs as a warning: each such run fails with <c>unknown_tool</c> at its next call of
    /// the version on this silo (compensating what it did), from where a replay from a checkpoint before its first call
    /// of the tool pins a version this silo has.
    /// </summary>
    Start,
}

/// <summary>Settings of the tool contract catalog (<c>Spine:Tools</c>).</summary>
public sealed class ToolCatalogOptions
{
    /// <summary>What to do when in-flight runs pinned a tool version this silo does not register. Default <see cref="MissingPinnedVersions.Refuse"/>.</summary>
    public MissingPinnedVersions MissingPinnedVersions { get; set; } = MissingPinnedVersions.Refuse;
}

/// <summary>A tool version the runs still in flight pinned: the tool, the version, how many runs, and some of them.</summary>
public sealed record ToolPin(string Tool, string Version, int Runs, IReadOnlyList<string> SomeRunIds);

/// <summary>
/// The contracts every silo registered, kept in <c>spine_tool_contracts</c>, and the versions in-flight runs pinned (read
/// from their journals). While the silo starts, <see cref="CheckAsync"/> refuses a version whose contract differs from the
/// one registered before under that version, a breaking change against any version registered before in the same
/// major, and (unless told otherwise) the absence of a version an in-flight run pinned.
/// </summary>
public sealed class ToolCatalog(SpineDatabase database, ToolRegistry tools, IOptions<SpineOptions> options, Mcp.McpToolSource mcp, ILogger<ToolCatalog> logger)
{
    // Statuses a run never leaves (RunStatusExtensions.IsTerminal): Completed, Failed, Cancelled, DeadLettered, Discarded, Quarantined.
    private const string InFlight = "r.status NOT IN (3, 4, 5, 8, 9, 10)";

    /// <summary>
    /// The digest a contract is stored under: SHA-256 over its input and output schemas as compact JSON, without the
    /// keywords that only annotate (<c>description</c>, <c>title</c>, <c>examples</c>, <c>$comment</c>): rewording a
    /// description is not a new contract.
    /// </summary>
    public static byte[] Digest(ToolDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var text = Canonical(definition.InputSchema) + "\n" + Canonical(definition.OutputSchema);
        return SHA256.HashData(Encoding.UTF8.GetBytes(text));
    }

    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal) { "description", "title", "examples", "$comment" };

    // Keywords whose values are data, not schemas: kept exactly as written.
    private static readonly HashSet<string> Values = new(StringComparer.Ordinal) { "enum", "const", "default", "required" };

    // Keywords whose values map names to schemas.
    private static readonly HashSet<string> SchemaMaps = new(StringComparer.Ordinal) { "properties", "patternProperties", "$defs", "definitions", "dependentSchemas" };

    private static string Canonical(string schema) => Strip(JsonNode.Parse(schema))?.ToJsonString() ?? "null";

    private static JsonNode? Strip(JsonNode? schema)
    {
        switch (schema)
        {
            case JsonObject keywords:
                var kept = new JsonObject();
                foreach (var (key, value) in keywords)
                {
                    if (Annotations.Contains(key))
                    {
                        continue;
                    }

                    kept[key] = Values.Contains(key) ? value?.DeepClone()
                        : SchemaMaps.Contains(key) && value is JsonObject map ? new JsonObject(map.Select(p => KeyValuePair.Create(p.Key, Strip(p.Value))))
                        : Strip(value);
                }

                return kept;
            case JsonArray items:
                return new JsonArray(items.Select(Strip).ToArray());
            default:
                return schema?.DeepClone();
        }
    }

    /// <summary>Runs the start-up checks and records the versions this silo registers for the first time.</summary>
    /// <exception cref="InvalidOperationException">A check failed; the message names each tool, version and run.</exception>
    public async Task CheckAsync(CancellationToken cancellationToken)
    {
        var local = tools.All.Select(t => t.Definition).ToList();
        var names = local.Select(d => d.Name).Distinct().ToArray();
        var stored = await StoredAsync(names, cancellationToken);
        var problems = new List<string>();
        problems.AddRange(Conflicts(local, stored));
        problems.AddRange(BreakingAgainstStored(local, stored));
        if (problems.Count == 0)
        {
            await RecordAsync(local.Where(d => !stored.ContainsKey((d.Name, d.Version))), cancellationToken);

            // Another silo may have recorded one of them meanwhile, with another contract.
            problems.AddRange(Conflicts(local, await StoredAsync(names, cancellationToken)));
        }

        // An MCP server's tools change with the server, not with a deploy: a version its server dropped is warned of, never refused.
        var pins = (await PinsAsync(null, cancellationToken)).Where(p => !tools.VersionsOf(p.Tool).Contains(p.Version)).ToList();
        if (pins.Where(p => mcp.Owns(p.Tool)).ToList() is { Count: > 0 } dropped)
        {
            logger.LogWarning("In-flight runs pinned versions of MCP tools their servers no longer offer; they fail at their next call of them: {Pins}",
                string.Join("; ", dropped.Select(p => $"'{p.Tool}' {p.Version} by {p.Runs} run(s)")));
        }

        var missing = pins.Where(p => !mcp.Owns(p.Tool)).ToList();
        if (missing.Count > 0)
        {
            var list = string.Join("; ", missing.Select(p => $"'{p.Tool}' {p.Version} by {p.Runs} run(s) ({string.Join(", ", p.SomeRunIds)}{(p.Runs > p.SomeRunIds.Count ? ", ..." : "")})"));
            if (options.Value.Tools.MissingPinnedVersions == MissingPinnedVersions.Start)
            {
                logger.LogWarning("In-flight runs pinned tool versions this silo does not register; they fail at their next call of them here: {Pins}", list);
            }
            else
            {
                problems.Add($"In-flight runs pinned tool versions this silo does not register: {list}. Register those versions alongside the new ones " +
                    "until `spine tools show <tool>` shows no run pinning them, or set Spine:Tools:MissingPinnedVersions to Start to start anyway " +
                    "(those runs then fail at their next call of the version; see docs/tools.md).");
            }
        }

        if (problems.Count > 0)
        {
            throw new InvalidOperationException(string.Join(Environment.NewLine, problems));
        }
    }

    /// <summary>The tool versions runs still in flight pinned (by a completed call, or by a compensation they registered); of one tool, or of all.</summary>
    public async Task<IReadOnlyList<ToolPin>> PinsAsync(string? tool, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand($"""
            SELECT p.tool, p.version, count(DISTINCT p.run_id)::int, (array_agg(DISTINCT p.run_id))[1:5]
            FROM (
                SELECT j.run_id,
                       CASE WHEN j.kind = 2 THEN j.name ELSE j.payload::jsonb ->> 'tool' END AS tool,
                       j.payload::jsonb ->> 'version' AS version
                FROM spine_runs r
                JOIN spine_journal j ON j.run_id = r.run_id
                WHERE {InFlight} AND ((j.kind = 2 AND j.ok) OR j.kind = 8)
            ) p
            WHERE p.version IS NOT NULL AND (@tool::text IS NULL OR p.tool = @tool::text)
            GROUP BY p.tool, p.version
            ORDER BY p.tool, p.version
            """);
        command.Parameters.Add(new NpgsqlParameter("tool", NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)tool ?? DBNull.Value });
        var pins = new List<ToolPin>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            pins.Add(new ToolPin(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), reader.GetFieldValue<string[]>(3)));
        }

        return pins;
    }

    /// <summary>Every recorded contract of these tools (all when <paramref name="names"/> is null), by name and version.</summary>
    public Task<Dictionary<(string Name, string Version), StoredContract>> StoredAsync(string[]? names, CancellationToken cancellationToken) =>
        StoredAsync(database.DataSource, names, cancellationToken);

    internal static async Task<Dictionary<(string Name, string Version), StoredContract>> StoredAsync(NpgsqlDataSource data, string[]? names, CancellationToken cancellationToken)
    {
        await using var command = data.CreateCommand(
            "SELECT name, version, digest, description, input_schema, output_schema, registered_at FROM spine_tool_contracts WHERE @names::text[] IS NULL OR name = ANY(@names::text[])");
        command.Parameters.Add(new NpgsqlParameter("names", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)names ?? DBNull.Value });
        var stored = new Dictionary<(string, string), StoredContract>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var definition = new ToolDefinition
            {
                Name = reader.GetString(0), Version = reader.GetString(1), Description = reader.GetString(3),
                InputSchema = reader.GetString(4), OutputSchema = reader.GetString(5),
            };
            stored[(definition.Name, definition.Version)] = new StoredContract(definition, reader.GetFieldValue<byte[]>(2), reader.GetFieldValue<DateTimeOffset>(6));
        }

        return stored;
    }

    private static IEnumerable<string> Conflicts(List<ToolDefinition> local, Dictionary<(string, string), StoredContract> stored)
    {
        foreach (var definition in local)
        {
            if (stored.TryGetValue((definition.Name, definition.Version), out var before) && !before.Digest.AsSpan().SequenceEqual(Digest(definition)))
            {
                yield return $"Tool '{definition.Name}' {definition.Version} was registered on {before.RegisteredAt:u} with another contract " +
                    $"(input or output schema): a changed contract needs a new version, as runs pinned {definition.Version} to the old one.";
            }
        }
    }

    private static IEnumerable<string> BreakingAgainstStored(List<ToolDefinition> local, Dictionary<(string, string), StoredContract> stored)
    {
        var localKeys = local.Select(d => (d.Name, d.Version)).ToHashSet();
        foreach (var group in local.Concat(stored.Values.Select(s => s.Definition)).GroupBy(d => d.Name))
        {
            var versions = group.DistinctBy(d => d.Version).OrderBy(d => NuGet.Versioning.SemanticVersion.Parse(d.Version)).ToList();
            foreach (var (older, newer, message) in ToolRegistry.BreakingPairs(versions))
            {
                // Two recorded versions that break each other were let in before this check: only what this silo brings is refused.
                if (localKeys.Contains((newer.Name, newer.Version)) || localKeys.Contains((older.Name, older.Version)))
                {
                    yield return message + (localKeys.Contains((older.Name, older.Version)) ? "" : $" ({older.Version} was registered before, by a silo of an earlier deploy.)");
                }
            }
        }
    }

    private Task RecordAsync(IEnumerable<ToolDefinition> definitions, CancellationToken cancellationToken) =>
        RecordAsync(database.DataSource, definitions, cancellationToken);

    /// <summary>Records contracts not recorded yet (a recorded version is left as it is).</summary>
    internal static async Task RecordAsync(NpgsqlDataSource data, IEnumerable<ToolDefinition> definitions, CancellationToken cancellationToken)
    {
        var batch = definitions.ToList();
        if (batch.Count == 0)
        {
            return;
        }

        await using var command = data.CreateCommand("""
            INSERT INTO spine_tool_contracts (name, version, digest, description, input_schema, output_schema, registered_at)
            SELECT n, v, d, de, i, o, now()
            FROM unnest(@names::text[], @versions::text[], @digests::bytea[], @descriptions::text[], @inputs::text[], @outputs::text[]) AS u(n, v, d, de, i, o)
            ON CONFLICT (name, version) DO NOTHING
            """);
        command.Parameters.AddWithValue("names", batch.Select(d => d.Name).ToArray());
        command.Parameters.AddWithValue("versions", batch.Select(d => d.Version).ToArray());
        command.Parameters.AddWithValue("digests", batch.Select(Digest).ToArray());
        command.Parameters.AddWithValue("descriptions", batch.Select(d => d.Description).ToArray());
        command.Parameters.AddWithValue("inputs", batch.Select(d => d.InputSchema).ToArray());
        command.Parameters.AddWithValue("outputs", batch.Select(d => d.OutputSchema).ToArray());
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

}

/// <summary>A contract as <c>spine_tool_contracts</c> recorded it.</summary>
public sealed record StoredContract(ToolDefinition Definition, byte[] Digest, DateTimeOffset RegisteredAt);
