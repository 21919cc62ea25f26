namespace Spine.Policies;

/// <summary>The run policies a silo enforces, as configured.</summary>
[GenerateSerializer, Immutable, Alias("spine.PolicySetView")]
public sealed record PolicySetView
{
    /// <summary>Whether a run no rule matches may call no tool and no model.</summary>
    [Id(0)] public bool DenyByDefault { get; init; }

    /// <summary>How many denials the agent loop answers before the run fails.</summary>
    [Id(1)] public int MaxDenials { get; init; }

    /// <summary>The rules, in the order they were configured.</summary>
    [Id(2)] public IReadOnlyList<PolicyRuleView> Rules { get; init; } = [];
}

/// <summary>One rule: which runs it applies to and what it permits them.</summary>
[GenerateSerializer, Immutable, Alias("spine.PolicyRuleView")]
public sealed record PolicyRuleView
{
    /// <summary>The rule's name (or where it was configured).</summary>
    [Id(0)] public required string Name { get; init; }

    /// <summary>The workflow type, or <c>*</c>.</summary>
    [Id(1)] public required string Workflow { get; init; }

    /// <summary>The starter role it applies to; null: every run.</summary>
    [Id(2)] public string? Role { get; init; }

    /// <summary>The most tool calls per run; null: no limit.</summary>
    [Id(3)] public int? MaxToolCalls { get; init; }

    /// <summary>The permitted chat clients; null: any.</summary>
    [Id(4)] public IReadOnlyList<string>? ChatClients { get; init; }

    /// <summary>The permitted tools.</summary>
    [Id(5)] public IReadOnlyList<ToolRuleView> Tools { get; init; } = [];
}

/// <summary>What a rule permits of one tool.</summary>
[GenerateSerializer, Immutable, Alias("spine.ToolRuleView")]
public sealed record ToolRuleView
{
    /// <summary>The tool, or <c>*</c>.</summary>
    [Id(0)] public required string Tool { get; init; }

    /// <summary>The version range; null: any.</summary>
    [Id(1)] public string? Versions { get; init; }

    /// <summary>The most calls per run; null: no limit.</summary>
    [Id(2)] public int? MaxCalls { get; init; }

    /// <summary>The JSON Schema fragment the arguments must match; null: none.</summary>
    [Id(3)] public string? ArgumentsSchema { get; init; }

    /// <summary>The roles that approve every call; null: no approval required by the rule.</summary>
    [Id(4)] public IReadOnlyList<string>? ApprovalRoles { get; init; }

    /// <summary>The confidence gate: a proposed call below it needs approval; null: none.</summary>
    [Id(5)] public double? MinConfidence { get; init; }
}
