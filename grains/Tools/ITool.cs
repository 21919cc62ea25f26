using System.Text.Json;
using Spine.Breakers;
using Spine.Errors;
using Spine.Recovery;

namespace Spine.Tools;

/// <summary>What calling a tool does to the world.</summary>
public enum ToolEffect
{
    /// <summary>Reads only; safe to repeat.</summary>
    ReadOnly,

    /// <summary>Changes the world, but repeating with the same idempotency key has no further effect.</summary>
    Idempotent,

    /// <summary>Changes the world; the tool must deduplicate on <see cref="ToolContext.IdempotencyKey"/>.</summary>
    SideEffecting,
}

/// <summary>A tool's contract: name, semantic version, and JSON Schemas for its input and output.</summary>
public sealed class ToolDefinition
{
    /// <summary>The name workflows and models call it by, e.g. <c>"calculator"</c>.</summary>
    public required string Name { get; init; }

    /// <summary>A semantic version, e.g. <c>"1.0.0"</c>.</summary>
    public required string Version { get; init; }

    /// <summary>What it does, shown to the model.</summary>
    public required string Description { get; init; }

    /// <summary>JSON Schema (draft 2020-12) of the arguments object.</summary>
    public required string InputSchema { get; init; }

    /// <summary>JSON Schema of the output.</summary>
    public required string OutputSchema { get; init; }

    /// <summary>The effect class. Default <see cref="ToolEffect.SideEffecting"/>.</summary>
    public ToolEffect Effect { get; init; } = ToolEffect.SideEffecting;

    /// <summary>The retry policy of calls to this tool; null takes <c>Spine:Retry:Tool</c>.</summary>
    public RetryPolicy? Retry { get; init; }

    /// <summary>The circuit breaker policy; null takes <c>Spine:Breaker</c>.</summary>
    public BreakerPolicy? Breaker { get; init; }

    /// <summary>How long one attempt may take before it counts as a (transient) timeout; null for no limit.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Classifies the tool's own exceptions (return null to fall back to the defaults).</summary>
    public Func<Exception, ErrorClass?>? ClassifyError { get; init; }

    /// <summary>
    /// What one successful call costs, in the unit prices are configured in: reserved before the call in its run's
    /// and account's budgets, and charged when it succeeds. Null: the tool costs nothing.
    /// </summary>
    public decimal? CostPerCall { get; init; }

    /// <summary>Every call of the tool waits for a human's approval first (who approves, and how long they have); null: none needed.</summary>
    public Approvals.ToolApproval? Approval { get; init; }

    /// <summary>
    /// The names of the secrets the tool reads (<see cref="ToolContext.Secrets"/>), resolved by the silo's
    /// <see cref="Secrets.ISecretProvider"/> at each attempt; each must be available when the silo starts.
    /// </summary>
    public IReadOnlyList<string> Secrets { get; init; } = [];
}

/// <summary>What a tool invocation learns about its call.</summary>
/// <param name="RunId">The run.</param>
/// <param name="Step">The step number.</param>
/// <param name="IdempotencyKey">Stable across retries and re-executions of this call; deduplicate side effects on it.</param>
/// <param name="CancellationToken">Signalled when the run's activation shuts down or the attempt times out.</param>
/// <param name="Attempt">Which attempt this is (from 1).</param>
/// <param name="Secrets">The secrets the tool's definition declares, as resolved for this attempt.</param>
public sealed record ToolContext(string RunId, int Step, string IdempotencyKey, CancellationToken CancellationToken, int Attempt = 1, Secrets.ToolSecrets? Secrets = null)
{
    /// <summary>The secrets the tool's definition declares, as resolved for this attempt (none when it declares none).</summary>
    public Secrets.ToolSecrets Secrets { get; init; } = Secrets ?? Spine.Secrets.ToolSecrets.None;
}

/// <summary>A tool a workflow or a model can call.</summary>
public interface ITool
{
    /// <summary>The contract.</summary>
    ToolDefinition Definition { get; }

    /// <summary>Runs the tool on arguments that already passed the input schema.</summary>
    Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context);
}
