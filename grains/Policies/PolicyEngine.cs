using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Microsoft.Extensions.Options;
using NuGet.Versioning;
using Spine.Identity;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Policies;

/// <summary>Why a call is not permitted: the rule that decided (or <c>deny-by-default</c>) and the reason.</summary>
/// <param name="Rule">The rule's name or setting path.</param>
/// <param name="Reason">What the call asked that the rule does not permit.</param>
public sealed record PolicyDenial(string Rule, string Reason);

/// <summary>
/// The run policies, compiled and checked once at start-up: an unknown tool or workflow, a malformed version range or
/// argument schema, or a negative limit stops the silo with an error naming the setting. Decides, for a run of a
/// workflow type started by an actor, whether a tool call or a model call is permitted, and which tools an agent may
/// be shown.
/// </summary>
public sealed class PolicyEngine
{
    private const string DenyByDefault = "deny-by-default";
    private static readonly EvaluationOptions Evaluation = new() { OutputFormat = OutputFormat.List };
    private readonly List<CompiledRule> _rules = [];
    private readonly bool _denyByDefault;

    /// <summary>Compiles the configured policies.</summary>
    /// <exception cref="InvalidOperationException">A rule is malformed or names a tool or workflow this silo does not have; the message names each setting.</exception>
    public PolicyEngine(IOptions<PolicyOptions> options, ToolRegistry tools, WorkflowRegistry workflows)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(tools);
        ArgumentNullException.ThrowIfNull(workflows);
        var policy = options.Value;
        var problems = new List<string>();
        var rules = policy.Rules.Select((r, i) => (Rule: r, Path: $"Spine:Policies:Rules:{i}")).ToList();
        _denyByDefault = policy.DenyByDefault;
        if (policy.File is { Length: > 0 } file)
        {
            var loaded = Load(file, problems);
            _denyByDefault |= loaded?.DenyByDefault ?? false;
            rules.AddRange((loaded?.ToRules() ?? []).Select((r, i) => (r, $"{file}: rules[{i}]")));
        }

        if (policy.MaxDenials < 1)
        {
            problems.Add($"Spine:Policies:MaxDenials is {policy.MaxDenials}: it must be at least 1.");
        }

        var workflowNames = workflows.All.Select(w => w.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var (rule, path) in rules)
        {
            if (Compile(rule, path, tools, workflowNames, problems) is { } compiled)
            {
                _rules.Add(compiled);
            }
        }

        if (problems.Count > 0)
        {
            throw new InvalidOperationException("Invalid run policies: " + string.Join(" ", problems));
        }

        MaxDenials = policy.MaxDenials;
    }

    /// <summary>Whether any policy applies at all (rules, or deny by default): without, every call is permitted.</summary>
    public bool Active => _denyByDefault || _rules.Count > 0;

    /// <summary>How many denied calls the agent loop answers before the run fails.</summary>
    public int MaxDenials { get; }

    /// <summary>
    /// Whether a run of <paramref name="workflowType"/> started by <paramref name="startedBy"/> may call tool
    /// <paramref name="tool"/> at <paramref name="version"/> with <paramref name="arguments"/>, having made
    /// <paramref name="callsOfTool"/> calls of it and <paramref name="calls"/> tool calls in all. Null: permitted.
    /// </summary>
    public PolicyDenial? CheckTool(string workflowType, SpineActor? startedBy, string tool, string? version, JsonElement arguments, int callsOfTool, int calls)
    {
        var matching = Matching(workflowType, startedBy).ToList();
        if (matching.Count == 0)
        {
            return _denyByDefault ? new PolicyDenial(DenyByDefault, $"no rule applies to workflow '{workflowType}' and the starter's roles") : null;
        }

        PolicyDenial? first = null;
        foreach (var rule in matching)
        {
            var denial = rule.CheckTool(tool, version, arguments, callsOfTool, calls);
            if (denial is null)
            {
                return null;
            }

            // A rule that names the tool explains a denial better than one that does not know it.
            first = first is null || (first.Reason.StartsWith("the rule does not list", StringComparison.Ordinal) && !denial.Reason.StartsWith("the rule does not list", StringComparison.Ordinal))
                ? denial : first;
        }

        return first;
    }

    /// <summary>Whether such a run may call chat client <paramref name="clientKey"/> (null: the default one). Null: permitted.</summary>
    public PolicyDenial? CheckModel(string workflowType, SpineActor? startedBy, string? clientKey)
    {
        var key = clientKey ?? "default";
        var matching = Matching(workflowType, startedBy).ToList();
        if (matching.Count == 0)
        {
            return _denyByDefault ? new PolicyDenial(DenyByDefault, $"no rule applies to workflow '{workflowType}' and the starter's roles") : null;
        }

        return matching.Any(r => r.ChatClients is null || r.ChatClients.Contains(key))
            ? null
            : new PolicyDenial(matching[0].Name, $"the chat client '{key}' is not among those permitted ({string.Join(", ", matching.SelectMany(r => r.ChatClients ?? []).Distinct())})");
    }

    /// <summary>The rules that apply to such a run and list <paramref name="tool"/> (by name or <c>*</c>), with what they say of it.</summary>
    public IEnumerable<(string Rule, ToolRule Limits)> RulesFor(string workflowType, SpineActor? startedBy, string tool)
    {
        foreach (var rule in Matching(workflowType, startedBy))
        {
            if (rule.Source.Tools.TryGetValue(tool, out var limits) || rule.Source.Tools.TryGetValue("*", out limits))
            {
                yield return (rule.Name, limits);
            }
        }
    }

    /// <summary>
    /// The version of <paramref name="tool"/> a run of <paramref name="workflowType"/> started by <paramref name="startedBy"/>
    /// calls when it has pinned none: the newest of <paramref name="registered"/> that a rule applying to the run permits
    /// (stable before pre-release). Null when a rule takes any version, or when no rule lists the tool (the newest
    /// registered is called, and the policy stage decides whether it may be).
    /// </summary>
    public string? SelectVersion(string workflowType, SpineActor? startedBy, string tool, IReadOnlyCollection<string> registered)
    {
        ArgumentNullException.ThrowIfNull(registered);
        string? best = null;
        foreach (var rule in Matching(workflowType, startedBy))
        {
            if (!rule.Tools.TryGetValue(tool, out var limits) && !rule.Tools.TryGetValue("*", out limits))
            {
                continue;
            }

            if (limits.Versions is null)
            {
                return null;
            }

            var newest = ToolVersions.NewestIn(registered, limits.Versions);
            if (newest is not null && (best is null || Newer(newest, best)))
            {
                best = newest;
            }
        }

        return best;
    }

    private static bool Newer(string a, string b)
    {
        var (x, y) = (NuGetVersion.Parse(a), NuGetVersion.Parse(b));
        return x.IsPrerelease == y.IsPrerelease ? x > y : !x.IsPrerelease;
    }

    /// <summary>The tools of <paramref name="candidates"/> such a run may call at all (to show a model only those).</summary>
    public IReadOnlyList<string> PermittedTools(string workflowType, SpineActor? startedBy, IEnumerable<string> candidates)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        var matching = Matching(workflowType, startedBy).ToList();
        if (matching.Count == 0)
        {
            return _denyByDefault ? [] : candidates.ToList();
        }

        return candidates.Where(t => matching.Any(r => r.Lists(t))).ToList();
    }

    /// <summary>The policies as configured (for <c>spine policies show</c>).</summary>
    public PolicySetView View() => new()
    {
        DenyByDefault = _denyByDefault,
        MaxDenials = MaxDenials,
        Rules = _rules.Select(r => new PolicyRuleView
        {
            Name = r.Name,
            Workflow = r.Workflow,
            Role = r.Role,
            MaxToolCalls = r.MaxToolCalls,
            ChatClients = r.Source.ChatClients?.ToList(),
            Tools = r.Source.Tools.Select(t => new ToolRuleView
            {
                Tool = t.Key, Versions = t.Value.Versions, MaxCalls = t.Value.MaxCalls, ArgumentsSchema = t.Value.Arguments,
                ApprovalRoles = t.Value.RequireApproval?.ApproverRoles.ToList(), MinConfidence = t.Value.MinConfidence,
            }).ToList(),
        }).ToList(),
    };

    private IEnumerable<CompiledRule> Matching(string workflowType, SpineActor? startedBy) =>
        _rules.Where(r => (r.Workflow == "*" || r.Workflow == workflowType) && (r.Role is null || (startedBy?.HasRole(r.Role) ?? false)));

    private static PolicyFile? Load(string file, List<string> problems)
    {
        try
        {
            var text = System.IO.File.ReadAllText(file);
            return JsonSerializer.Deserialize<PolicyFile>(text, new JsonSerializerOptions(JsonSerializerDefaults.Web) { ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or NotSupportedException)
        {
            problems.Add($"Spine:Policies:File '{file}' cannot be read as a policy file: {e.Message}");
            return null;
        }
    }

    private static CompiledRule? Compile(PolicyRule rule, string path, ToolRegistry tools, HashSet<string> workflows, List<string> problems)
    {
        var before = problems.Count;
        if (string.IsNullOrWhiteSpace(rule.Workflow) || (rule.Workflow != "*" && !workflows.Contains(rule.Workflow)))
        {
            problems.Add($"{path}:Workflow '{rule.Workflow}' is not a registered workflow type (or '*').");
        }

        if (rule.Role is { } role && string.IsNullOrWhiteSpace(role))
        {
            problems.Add($"{path}:Role is empty: leave it out to apply the rule to every run.");
        }

        if (rule.MaxToolCalls is < 0)
        {
            problems.Add($"{path}:MaxToolCalls is {rule.MaxToolCalls}: it must not be negative.");
        }

        var compiledTools = new Dictionary<string, CompiledTool>(StringComparer.Ordinal);
        foreach (var (name, tool) in rule.Tools)
        {
            var at = $"{path}:Tools:{name}";
            if (name != "*" && tools.TryResolve(name) is null)
            {
                problems.Add($"{at} names a tool this silo does not register.");
            }

            VersionRange? range = null;
            if (tool.Versions is { } versions && !ToolVersions.TryParseRange(versions, out range))
            {
                problems.Add($"{at}:Versions '{versions}' is not a version range (e.g. ^1.2, ~1.2.3, [1.0.0,2.0.0) or 1.2.0).");
            }

            if (tool.MaxCalls is < 0)
            {
                problems.Add($"{at}:MaxCalls is {tool.MaxCalls}: it must not be negative.");
            }

            problems.AddRange(tool.RequireApproval?.Problems($"{at}:RequireApproval") ?? []);
            problems.AddRange(tool.ConfidenceApproval?.Problems($"{at}:ConfidenceApproval") ?? []);
            if (tool.MinConfidence is { } gate)
            {
                if (gate is < 0 or > 1)
                {
                    problems.Add($"{at}:MinConfidence is {gate}: it must be between 0 and 1.");
                }

                if (tool.ConfidenceApproval is null && tool.RequireApproval is null && name != "*" && tools.TryResolve(name)?.Definition.Approval is null)
                {
                    problems.Add($"{at}:MinConfidence has no approvers: set ConfidenceApproval (the tool's definition names none).");
                }
            }

            JsonSchema? schema = null;
            if (tool.Arguments is { } arguments)
            {
                try
                {
                    schema = JsonSchema.FromText(arguments);
                }
                catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
                {
                    problems.Add($"{at}:Arguments is not a JSON Schema: {e.Message}");
                }
            }

            compiledTools[name] = new CompiledTool(range, tool.MaxCalls, schema);
        }

        return problems.Count > before
            ? null
            : new CompiledRule(rule, rule.Name ?? path, rule.Workflow, rule.Role, compiledTools, rule.MaxToolCalls, rule.ChatClients?.ToHashSet(StringComparer.Ordinal));
    }

    private sealed record CompiledTool(VersionRange? Versions, int? MaxCalls, JsonSchema? Arguments);

    private sealed record CompiledRule(PolicyRule Source, string Name, string Workflow, string? Role, Dictionary<string, CompiledTool> Tools, int? MaxToolCalls, HashSet<string>? ChatClients)
    {
        public bool Lists(string tool) => Tools.ContainsKey(tool) || Tools.ContainsKey("*");

        public PolicyDenial? CheckTool(string tool, string? version, JsonElement arguments, int callsOfTool, int calls)
        {
            if (!Tools.TryGetValue(tool, out var limits) && !Tools.TryGetValue("*", out limits))
            {
                return new PolicyDenial(Name, $"the rule does not list the tool '{tool}'");
            }

            if (limits.Versions is { } range && (version is null || !NuGetVersion.TryParse(version, out var parsed) || !range.Satisfies(parsed)))
            {
                return new PolicyDenial(Name, $"version {version ?? "(none)"} of '{tool}' is outside {ToolVersions.Describe(range)}");
            }

            if (MaxToolCalls is { } total && calls >= total)
            {
                return new PolicyDenial(Name, $"the run made {calls} tool calls, the most it may ({total})");
            }

            if (limits.MaxCalls is { } most && callsOfTool >= most)
            {
                return new PolicyDenial(Name, $"the run called '{tool}' {callsOfTool} times, the most it may ({most})");
            }

            if (limits.Arguments is { } schema)
            {
                var result = schema.Evaluate(JsonNode.Parse(arguments.ValueKind == JsonValueKind.Undefined ? "null" : arguments.GetRawText()), Evaluation);
                if (!result.IsValid)
                {
                    var errors = RegisteredTool.Errors(result, "the arguments do not match the rule's schema");
                    return new PolicyDenial(Name, $"the arguments break the rule's constraints: {string.Join("; ", errors)}");
                }
            }

            return null;
        }
    }

    private sealed class PolicyFile
    {
        public bool DenyByDefault { get; set; }

        public List<FileRule> Rules { get; set; } = [];

        public IEnumerable<PolicyRule> ToRules() => Rules.Select(r => r.ToRule());
    }

    private sealed class FileRule
    {
        public string? Name { get; set; }

        public string Workflow { get; set; } = "*";

        public string? Role { get; set; }

        public Dictionary<string, FileTool> Tools { get; set; } = [];

        public int? MaxToolCalls { get; set; }

        public List<string>? ChatClients { get; set; }

        public PolicyRule ToRule()
        {
            var rule = new PolicyRule { Name = Name, Workflow = Workflow, Role = Role, MaxToolCalls = MaxToolCalls, ChatClients = ChatClients };
            foreach (var (name, tool) in Tools)
            {
                rule.Tools[name] = new ToolRule
                {
                    Versions = tool.Versions,
                    MaxCalls = tool.MaxCalls,
                    RequireApproval = tool.RequireApproval,
                    MinConfidence = tool.MinConfidence,
                    ConfidenceApproval = tool.ConfidenceApproval,
                    Arguments = tool.Arguments is { ValueKind: not JsonValueKind.Undefined and not JsonValueKind.Null } schema ? schema.GetRawText() : null,
                };
            }

            return rule;
        }
    }

    private sealed class FileTool
    {
        public string? Versions { get; set; }

        public int? MaxCalls { get; set; }

        public JsonElement? Arguments { get; set; }

        public Approvals.ToolApproval? RequireApproval { get; set; }

        public double? MinConfidence { get; set; }

        public Approvals.ToolApproval? ConfidenceApproval { get; set; }
    }
}
