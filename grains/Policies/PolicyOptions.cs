namespace Spine.Policies;

/// <summary>
/// The guardrails runs execute under (<c>Spine:Policies</c>, a policy file, or code through
/// <c>AddSpinePolicy</c>): rules per workflow type and starter role saying which tools (and versions, arguments and
/// call counts) and which chat clients a run may use. A run that no rule matches may do anything, unless
/// <see cref="DenyByDefault"/>.
/// </summary>
public sealed class PolicyOptions
{
    /// <summary>When true, a run that no rule matches may call no tool and no model.</summary>
    public bool DenyByDefault { get; set; }

    /// <summary>How many denied tool calls the agent loop answers with "not permitted" before the run fails (at least 1).</summary>
    public int MaxDenials { get; set; } = 3;

    /// <summary>A JSON file of rules (<c>{ "denyByDefault": ..., "rules": [ ... ] }</c>), read at start-up in addition to <see cref="Rules"/>.</summary>
    public string? File { get; set; }

    /// <summary>The rules. A call is permitted when any rule matching the run permits it.</summary>
    public IList<PolicyRule> Rules { get; } = new List<PolicyRule>();
}

/// <summary>What runs of one workflow type, started by one role, may use.</summary>
public sealed class PolicyRule
{
    /// <summary>A name for the journal and errors; default: where the rule was configured (e.g. <c>Spine:Policies:Rules:0</c>).</summary>
    public string? Name { get; set; }

    /// <summary>The workflow type the rule applies to, or <c>*</c> for every type.</summary>
    public string Workflow { get; set; } = "*";

    /// <summary>The role the run's starter must hold for the rule to apply; null: any run.</summary>
    public string? Role { get; set; }

    /// <summary>The permitted tools by name (<c>*</c> for any tool), each with its limits.</summary>
    public IDictionary<string, ToolRule> Tools { get; } = new Dictionary<string, ToolRule>(StringComparer.Ordinal);

    /// <summary>The most tool calls one run may make in all (a runaway-loop guard); null: no limit.</summary>
    public int? MaxToolCalls { get; set; }

    /// <summary>The chat clients (keys; <c>default</c> for the silo's unkeyed one) a run may call; null: any.</summary>
    public IList<string>? ChatClients { get; set; }
}

/// <summary>What a rule permits of one tool.</summary>
public sealed class ToolRule
{
    /// <summary>
    /// The versions a run may call (see <see cref="Tools.ToolVersions.TryParseRange"/>): <c>^1.2</c>, <c>~1.2.3</c>, or a
    /// NuGet range such as <c>[1.0.0,2.0.0)</c> or <c>1.2.0</c> (at least 1.2.0); null: any version. A run that has not
    /// pinned the tool calls the newest version the range takes, and pins it.
    /// </summary>
    public string? Versions { get; set; }

    /// <summary>The most calls of this tool one run may make; null: no limit.</summary>
    public int? MaxCalls { get; set; }

    /// <summary>
    /// A JSON Schema fragment (as JSON text) the arguments must also match, over the tool's own schema: limits,
    /// allowed values, patterns.
    /// </summary>
    public string? Arguments { get; set; }

    /// <summary>Every call of the tool by such a run waits for a human's approval first (who approves, and how long they have).</summary>
    public Approvals.ToolApproval? RequireApproval { get; set; }

    /// <summary>
    /// The confidence gate: a call proposed with a confidence below this (0..1), or with none, waits for approval,
    /// by <see cref="RequireApproval"/>'s approvers, else the tool's own (<see cref="Tools.ToolDefinition.Approval"/>).
    /// </summary>
    public double? MinConfidence { get; set; }

    /// <summary>Who approves a call below <see cref="MinConfidence"/> when the rule does not always require approval.</summary>
    public Approvals.ToolApproval? ConfidenceApproval { get; set; }
}
