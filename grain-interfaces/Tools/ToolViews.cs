namespace Spine.Tools;

/// <summary>A tool with every version the cluster knows of (<c>spine tools list|show</c>).</summary>
[GenerateSerializer, Immutable, Alias("spine.ToolView")]
public sealed record ToolView
{
    /// <summary>The tool's name.</summary>
    [Id(0)] public required string Name { get; init; }

    /// <summary>The version a call that names none takes on the answering silo (null when it registers none).</summary>
    [Id(1)] public string? Newest { get; init; }

    /// <summary>Every version: registered on the answering silo, or recorded by any silo before; oldest first.</summary>
    [Id(2)] public IReadOnlyList<ToolVersionView> Versions { get; init; } = [];
}

/// <summary>One version of a tool: its contract, where it is registered, and which in-flight runs pinned it.</summary>
[GenerateSerializer, Immutable, Alias("spine.ToolVersionView")]
public sealed record ToolVersionView
{
    /// <summary>The semantic version.</summary>
    [Id(0)] public required string Version { get; init; }

    /// <summary>What the model is told the tool does.</summary>
    [Id(1)] public string Description { get; init; } = "";

    /// <summary>The effect class (<c>ReadOnly</c>, <c>Idempotent</c>, <c>SideEffecting</c>); null for a version the answering silo does not register.</summary>
    [Id(2)] public string? Effect { get; init; }

    /// <summary>The input JSON Schema.</summary>
    [Id(3)] public string InputSchema { get; init; } = "";

    /// <summary>The output JSON Schema.</summary>
    [Id(4)] public string OutputSchema { get; init; } = "";

    /// <summary>Whether the answering silo registers this version.</summary>
    [Id(5)] public bool Registered { get; init; }

    /// <summary>When a silo first registered it (from the contract catalog); null before it was recorded.</summary>
    [Id(6)] public DateTimeOffset? FirstRegisteredAt { get; init; }

    /// <summary>How many runs still in flight pinned this version.</summary>
    [Id(7)] public int PinnedBy { get; init; }

    /// <summary>Up to five of those runs.</summary>
    [Id(8)] public IReadOnlyList<string> PinningRuns { get; init; } = [];

    /// <summary>The contract's digest (SHA-256 of its schemas, hex).</summary>
    [Id(9)] public string Digest { get; init; } = "";
}
