using Spine.Identity;

namespace Spine.Approvals;

/// <summary>What an approval that nobody decided becomes at its deadline.</summary>
public enum ApprovalTimeoutAction
{
    /// <summary>Rejected (the default: nothing consequential happens without a human).</summary>
    Reject,

    /// <summary>Approved.</summary>
    Approve,

    /// <summary>Handed to <see cref="ApprovalRequest.EscalateTo"/>, with its own deadline.</summary>
    Escalate,
}

/// <summary>Where an undecided approval goes at its deadline when it escalates.</summary>
/// <param name="ApproverRoles">The roles that may decide from then on (the first ones no longer may).</param>
/// <param name="Timeout">How long they have.</param>
/// <param name="OnTimeout">What their deadline does: reject or approve (an escalation does not escalate again).</param>
[GenerateSerializer, Immutable, Alias("spine.ApprovalEscalation")]
public sealed record ApprovalEscalation(
    [property: Id(0)] IReadOnlyList<string> ApproverRoles,
    [property: Id(1)] TimeSpan Timeout,
    [property: Id(2)] ApprovalTimeoutAction OnTimeout = ApprovalTimeoutAction.Reject);

/// <summary>What a workflow asks a human to approve (<c>ctx.RequestApprovalAsync</c>).</summary>
/// <param name="Name">The approval's name, the step's name in the journal (checked on replay), e.g. <c>refund</c>.</param>
/// <param name="Question">What is asked, for the approver.</param>
/// <param name="ApproverRoles">The roles that may decide; an actor holding any of them may.</param>
/// <param name="Timeout">How long the approvers have.</param>
[GenerateSerializer, Immutable, Alias("spine.ApprovalRequest")]
public sealed record ApprovalRequest(
    [property: Id(0)] string Name,
    [property: Id(1)] string Question,
    [property: Id(2)] IReadOnlyList<string> ApproverRoles,
    [property: Id(3)] TimeSpan Timeout)
{
    /// <summary>The action proposed, as JSON (for example the tool call waiting for the approval); null when none.</summary>
    [Id(4)] public string? ProposedActionJson { get; init; }

    /// <summary>What the deadline does when nobody decided.</summary>
    [Id(5)] public ApprovalTimeoutAction OnTimeout { get; init; } = ApprovalTimeoutAction.Reject;

    /// <summary>Where the approval goes when <see cref="OnTimeout"/> is <see cref="ApprovalTimeoutAction.Escalate"/>.</summary>
    [Id(6)] public ApprovalEscalation? EscalateTo { get; init; }
}

/// <summary>How an approval ended, as the workflow receives it.</summary>
[GenerateSerializer, Immutable, Alias("spine.ApprovalDecision")]
public sealed record ApprovalDecision
{
    /// <summary>True when approved (by an approver, or by a deadline whose action is to approve).</summary>
    [Id(0)] public bool Approved { get; init; }

    /// <summary>True when the deadline decided, not a person.</summary>
    [Id(1)] public bool TimedOut { get; init; }

    /// <summary>Who decided; null when the deadline did.</summary>
    [Id(2)] public SpineActor? Actor { get; init; }

    /// <summary>The approver role the actor decided as.</summary>
    [Id(3)] public string? Role { get; init; }

    /// <summary>The approver's comment.</summary>
    [Id(4)] public string? Comment { get; init; }

    /// <summary>When the decision was made.</summary>
    [Id(5)] public DateTimeOffset DecidedAt { get; init; }
}

/// <summary>An approver's decision on a waiting approval (<c>ISpineClient.DecideApprovalAsync</c>).</summary>
/// <param name="Approve">True to approve, false to reject.</param>
/// <param name="Role">The approver role the actor decides as; the actor must hold it and the approval must accept it.</param>
/// <param name="Comment">Why, for the journal.</param>
/// <param name="Step">Which approval, when the run waits for several; null when it waits for one.</param>
/// <param name="Actor">Who decides (the client's configured actor when null); required.</param>
[GenerateSerializer, Immutable, Alias("spine.ApprovalVerdict")]
public sealed record ApprovalVerdict(
    [property: Id(0)] bool Approve,
    [property: Id(1)] string Role,
    [property: Id(2)] string? Comment = null,
    [property: Id(3)] int? Step = null,
    [property: Id(4)] SpineActor? Actor = null);

/// <summary>An approval a run waits for.</summary>
[GenerateSerializer, Immutable, Alias("spine.PendingApproval")]
public sealed record PendingApproval
{
    /// <summary>The run.</summary>
    [Id(0)] public required string RunId { get; init; }

    /// <summary>The run's account.</summary>
    [Id(1)] public string? AccountId { get; init; }

    /// <summary>The step that waits.</summary>
    [Id(2)] public int Step { get; init; }

    /// <summary>The approval's name.</summary>
    [Id(3)] public required string Name { get; init; }

    /// <summary>What is asked.</summary>
    [Id(4)] public required string Question { get; init; }

    /// <summary>The action proposed, as JSON.</summary>
    [Id(5)] public string? ProposedActionJson { get; init; }

    /// <summary>The roles that may decide now.</summary>
    [Id(6)] public IReadOnlyList<string> ApproverRoles { get; init; } = [];

    /// <summary>When the current approvers' time is up.</summary>
    [Id(7)] public DateTimeOffset Deadline { get; init; }

    /// <summary>When it was asked.</summary>
    [Id(8)] public DateTimeOffset RequestedAt { get; init; }

    /// <summary>True once the approval escalated to its second set of roles.</summary>
    [Id(9)] public bool Escalated { get; init; }
}

/// <summary>A filter for the approvals runs wait for. Every set member must match.</summary>
[GenerateSerializer, Immutable, Alias("spine.ApprovalQuery")]
public sealed record ApprovalQuery
{
    /// <summary>Only approvals of runs of this account.</summary>
    [Id(0)] public string? AccountId { get; init; }

    /// <summary>Only approvals this role may decide now.</summary>
    [Id(1)] public string? Role { get; init; }

    /// <summary>At most this many waiting runs are looked at (newest first).</summary>
    [Id(2)] public int Limit { get; init; } = 100;
}
