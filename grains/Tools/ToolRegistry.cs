using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Microsoft.Extensions.AI;
using NuGet.Versioning;
using Spine.Errors;

namespace Spine.Tools;

/// <summary>A registered tool with its compiled schemas.</summary>
public sealed class RegisteredTool
{
    private static readonly EvaluationOptions Evaluation = new() { OutputFormat = OutputFormat.List };
    private readonly JsonSchema _input;
    private readonly JsonSchema _output;

    internal RegisteredTool(ITool tool)
    {
        Tool = tool;
        var definition = tool.Definition;
        _input = Parse(definition, definition.InputSchema, "input");
        _output = Parse(definition, definition.OutputSchema, "output");
        InputSchemaElement = JsonDocument.Parse(definition.InputSchema).RootElement.Clone();
    }

    /// <summary>The tool.</summary>
    public ITool Tool { get; }

    /// <summary>The contract.</summary>
    public ToolDefinition Definition => Tool.Definition;

    /// <summary>The input schema as a JSON element (for model tool declarations).</summary>
    public JsonElement InputSchemaElement { get; }

    /// <summary>Throws <see cref="SchemaValidationException"/> when the arguments do not match the input schema.</summary>
    public void ValidateInput(JsonElement arguments) => Validate(_input, arguments, "input");

    /// <summary>Throws <see cref="SchemaValidationException"/> when the output does not match the output schema.</summary>
    public void ValidateOutput(JsonElement output) => Validate(_output, output, "output");

    /// <summary>The tool as a declaration a model can call.</summary>
    public AIFunctionDeclaration ToDeclaration() =>
        AIFunctionFactory.CreateDeclaration(Definition.Name, Definition.Description, InputSchemaElement);

    private void Validate(JsonSchema schema, JsonElement value, string direction)
    {
        var node = JsonNode.Parse(value.GetRawText());
        var result = schema.Evaluate(node, Evaluation);
        if (result.IsValid)
        {
            return;
        }

        throw new SchemaValidationException(Definition.Name, Definition.Version, direction, Errors(result, "the value does not match the schema"));
    }

    /// <summary>A failed evaluation's errors as <c>/location: message</c> lines (<paramref name="fallback"/> when it names none).</summary>
    internal static List<string> Errors(EvaluationResults result, string fallback)
    {
        var errors = (result.Details ?? [])
            .Where(d => d.Errors is { Count: > 0 })
            .SelectMany(d => d.Errors!.Select(e => $"{(d.InstanceLocation.ToString() is { Length: > 0 } at ? at : "/")}: {e.Value}"))
            .Distinct()
            .ToList();
        if (errors.Count == 0)
        {
            errors.Add("/: " + fallback);
        }

        return errors;
    }

    private static JsonSchema Parse(ToolDefinition definition, string schema, string direction)
    {
        try
        {
            return JsonSchema.FromText(schema);
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            throw new InvalidOperationException($"Tool '{definition.Name}' {definition.Version}: the {direction} schema is not valid JSON Schema: {e.Message}", e);
        }
    }
}

/// <summary>Every tool registered on this silo, by name and semantic version.</summary>
/// <remarks>
/// Built while the silo starts; a tool source whose contracts change at run time (an MCP server's) registers new
/// versions later with <see cref="Register"/>. Readers see one consistent snapshot per call.
/// </remarks>
public sealed class ToolRegistry
{
    private readonly object _writing = new();
    private volatile Dictionary<string, List<RegisteredTool>> _byName = new(StringComparer.Ordinal);

    /// <summary>
    /// Builds the registry, compiling every schema and checking every policy: the silo builds it while it starts,
    /// so a bad definition fails the start, not a run.
    /// </summary>
    public ToolRegistry(IEnumerable<ITool> tools)
    {
        ArgumentNullException.ThrowIfNull(tools);
        Add(tools.ToList(), checkBreaking: true);
    }

    /// <summary>
    /// Registers further versions at run time (of a source whose versions are its contracts' digests, so need no
    /// compatibility check); a version registered already is left as it is.
    /// </summary>
    /// <exception cref="InvalidOperationException">A definition is invalid.</exception>
    public void Register(IEnumerable<ITool> tools)
    {
        ArgumentNullException.ThrowIfNull(tools);
        Add(tools.ToList(), checkBreaking: false);
    }

    private void Add(List<ITool> all, bool checkBreaking)
    {
        var problems = all.SelectMany(t => ToolPolicies.Problems(t.Definition)).ToList();
        if (problems.Count > 0)
        {
            throw new InvalidOperationException(string.Join(Environment.NewLine, problems));
        }

        lock (_writing)
        {
            var byName = _byName.ToDictionary(e => e.Key, e => e.Value.ToList(), StringComparer.Ordinal);
            foreach (var tool in all)
            {
                var registered = new RegisteredTool(tool);
                if (!SemanticVersion.TryParse(tool.Definition.Version, out _))
                {
                    throw new InvalidOperationException($"Tool '{tool.Definition.Name}': version '{tool.Definition.Version}' is not a semantic version (major.minor.patch, optionally -prerelease).");
                }

                if (!byName.TryGetValue(tool.Definition.Name, out var versions))
                {
                    byName[tool.Definition.Name] = versions = [];
                }

                if (versions.Any(v => v.Definition.Version == tool.Definition.Version))
                {
                    if (!checkBreaking)
                    {
                        // Registered at run time already (by a read of the same list that came first).
                        continue;
                    }

                    throw new InvalidOperationException($"Tool '{tool.Definition.Name}' {tool.Definition.Version} is registered twice.");
                }

                versions.Add(registered);

                // SemVer order: 2.0.0-beta comes before 2.0.0, and 1.10.0 after 1.9.0.
                versions.Sort((a, b) => SemanticVersion.Parse(a.Definition.Version).CompareTo(SemanticVersion.Parse(b.Definition.Version)));
            }

            var breaking = checkBreaking ? byName.Values.SelectMany(v => BreakingChanges(v.Select(t => t.Definition))).ToList() : [];
            if (breaking.Count > 0)
            {
                throw new InvalidOperationException(string.Join(Environment.NewLine, breaking));
            }

            _byName = byName;
        }
    }

    /// <summary>
    /// Every breaking change between consecutive versions of one tool (<paramref name="versions"/>, in SemVer order) that
    /// share a compatibility line, each message naming both versions and what broke.
    /// </summary>
    public static IEnumerable<string> BreakingChanges(IEnumerable<ToolDefinition> versions) =>
        BreakingPairs(versions).Select(p => p.Message);

    /// <summary>As <see cref="BreakingChanges"/>, with the two versions of each.</summary>
    public static IEnumerable<(ToolDefinition Older, ToolDefinition Newer, string Message)> BreakingPairs(IEnumerable<ToolDefinition> versions)
    {
        ArgumentNullException.ThrowIfNull(versions);
        ToolDefinition? previous = null;
        foreach (var definition in versions.Where(d => !SemanticVersion.Parse(d.Version).IsPrerelease))
        {
            if (previous is not null && SchemaCompatibility.SameLine(previous.Version, definition.Version)
                && SchemaCompatibility.Breaks(previous, definition) is { Count: > 0 } breaks)
            {
                yield return (previous, definition, $"Tool '{definition.Name}' {definition.Version} breaks the contract of {previous.Version} without a new major version " +
                    $"({string.Join("; ", breaks)}): register it as {NextMajor(definition.Version)}, or keep the old contract.");
            }

            previous = definition;
        }
    }

    private static string NextMajor(string version)
    {
        var parsed = SemanticVersion.Parse(version);
        return parsed.Major == 0 ? $"0.{parsed.Minor + 1}.0" : $"{parsed.Major + 1}.0.0";
    }

    /// <summary>
    /// The tool with this name and exact version, or the newest when <paramref name="version"/> is null: the
    /// newest stable version, or the newest pre-release when the tool has no stable one.
    /// </summary>
    /// <exception cref="UnknownToolException">Not registered.</exception>
    public RegisteredTool Resolve(string name, string? version)
    {
        if (!_byName.TryGetValue(name, out var versions) || versions.Count == 0)
        {
            throw new UnknownToolException(name, version);
        }

        if (version is null)
        {
            return NewestOf(versions) ?? throw new UnknownToolException(name, version);
        }

        return versions.FirstOrDefault(v => v.Definition.Version == version) ?? throw new UnknownToolException(name, version);
    }

    /// <summary>The newest version of a tool, or null when none is registered.</summary>
    public RegisteredTool? TryResolve(string name) =>
        _byName.TryGetValue(name, out var versions) && versions.Count > 0 ? NewestOf(versions) : null;

    /// <summary>The registered versions of a tool, oldest first (none when it is not registered).</summary>
    public IReadOnlyList<string> VersionsOf(string name) =>
        _byName.TryGetValue(name, out var versions) ? versions.Select(v => v.Definition.Version).ToList() : [];

    /// <summary>Every registered version of every tool.</summary>
    public IEnumerable<RegisteredTool> All => _byName.Values.SelectMany(v => v);

    /// <summary>The newest version of every tool (stable before pre-release, as <see cref="Resolve"/>).</summary>
    public IEnumerable<RegisteredTool> Newest => _byName.Values.Select(NewestOf).OfType<RegisteredTool>();

    private static RegisteredTool? NewestOf(List<RegisteredTool> versions)
    {
        // A contract its MCP server no longer offers is kept for the runs that pinned it, never given to a new one.
        var offered = versions.Where(v => v.Tool is not Mcp.McpTool { Offered: false }).ToList();
        return offered.LastOrDefault(v => !SemanticVersion.Parse(v.Definition.Version).IsPrerelease) ?? offered.LastOrDefault();
    }
}
