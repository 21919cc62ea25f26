using System.Text.Json;
using Spine.Runs;

namespace Spine.Silo.Admin;

/// <summary>An approval decision: the role decided as (null: the first of the approval's roles the caller holds).</summary>
/// <param name="Role">The approver role to decide as.</param>
/// <param name="Comment">Why, for the journal.</param>
/// <param name="Step">Which approval, when the run waits for several.</param>
internal sealed record DecisionBody(string? Role = null, string? Comment = null, int? Step = null);

/// <summary>A reason for the journal, of a cancel or a discard.</summary>
internal sealed record ReasonBody(string? Reason = null);

/// <summary>A signal to a run.</summary>
/// <param name="Name">The signal's name.</param>
/// <param name="Payload">Its payload (any JSON).</param>
/// <param name="SignalId">Makes the send idempotent.</param>
internal sealed record SignalBody(string Name, JsonElement Payload, string? SignalId = null);

/// <summary>A replay of a finished run from a step, with changed input or parameters.</summary>
internal sealed record ReplayBody(int? FromStep = null, JsonElement? Input = null, Dictionary<string, string>? Parameters = null, string? IdempotencyKey = null);

/// <summary>An operator's decision on an escalated step.</summary>
internal sealed record EscalationBody(OperatorAction Action, JsonElement? Result = null, string? Reason = null, int? Step = null);

/// <summary>A run and its journal as a timeline.</summary>
internal sealed record RunTimelineView(RunInfo Run, IReadOnlyList<Spine.Client.TimelineEntry> Entries);

/// <summary>The caller as the API sees it.</summary>
internal sealed record CallerView(string Id, IReadOnlyList<string> Roles);
