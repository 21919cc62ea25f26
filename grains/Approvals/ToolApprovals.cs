using System.Text.Json;
using Spine.Errors;
using Spine.Identity;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;
using Spine.Policies;
using Spine.Tools;

namespace Spine.Approvals;

/// <summary>Who approves a tool's calls, and how long they have (on a tool's definition, or in a policy rule).</summary>
public sealed class ToolApproval
{
    /// <summary>The roles that may decide.</summary>
    public IList<string> ApproverRoles { get; set; } = new List<string>();

    /// <summary>How long they have. Default an hour.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromHours(1);

    /// <summary>What the deadline does: reject (the default), approve, or escalate to <see cref="EscalateTo"/>.</summary>
    public ApprovalTimeoutAction OnTimeout { get; set; } = ApprovalTimeoutAction.Reject;

    /// <summary>Where an undecided approval goes at its deadline when it escalates.</summary>
    public ApprovalEscalation? EscalateTo { get; set; }

    /// <summary>Every setting of this approval out of range, each naming <paramref name="path"/>.</summary>
    internal IEnumerable<string> Problems(string path)
    {
        if (ApproverRoles.Count == 0 || ApproverRoles.Any(string.IsNullOrWhiteSpace))
        {
            yield return $"{path}:ApproverRoles is empty: name the roles that may approve.";
        }

        if (Timeout <= TimeSpan.Zero)
        {
            yield return $"{path}:Timeout is {Timeout}: it must be positive.";
        }

        if (OnTimeout == ApprovalTimeoutAction.Escalate && EscalateTo is null)
        {
            yield return $"{path}:OnTimeout is Escalate without EscalateTo.";
        }
    }
}

/// <summary>Why a tool call waits for approval, and who approves it.</summary>
/// <param name="Approval">The approvers and their deadline.</param>
/// <param name="Reason">Why: the tool's definition, a policy rule, or the confidence gate.</param>
internal sealed record ToolApprovalNeed(ToolApproval Approval, string Reason);

/// <summary>
/// Decides whether a tool call waits for a human first: its definition says so, a policy rule for the run's workflow
/// type and starter role says so, or the call's confidence is below a rule's gate. The workflow context asks before
/// each tool call, so no workflow code reaches a tool that needs approval without one.
/// </summary>
public sealed class ToolApprovals(ToolRegistry tools, PolicyEngine policies)
{
    /// <summary>The name of the approval step that precedes a tool call.</summary>
    public static string StepName(string tool) => "approve " + tool;

    /// <summary>
    /// What a tool call needs before it runs (null: nothing). A call its policy denies needs no approval: nobody is
    /// asked about what may not happen, and the policy stage refuses it.
    /// </summary>
    internal ToolApprovalNeed? For(IStepRun run, string tool, string? version, JsonElement arguments, IReadOnlyCollection<string>? allowed, double? confidence)
    {
        var workflowType = run.WorkflowType;
        var startedBy = run.StartedBy;
        if (allowed is not null && !allowed.Contains(tool))
        {
            return null;
        }

        RegisteredTool? registered;
        try
        {
            registered = tools.Resolve(tool, version);
        }
        catch (Errors.UnknownToolException)
        {
            // The contract stage refuses it: it reaches nothing.
            return null;
        }

        if (policies.Active)
        {
            var (ofTool, all) = PolicyDenials.CountCalls(run, tool);
            if (policies.CheckTool(workflowType, startedBy, tool, registered.Definition.Version, arguments, ofTool, all) is not null)
            {
                return null;
            }
        }

        if (registered.Definition.Approval is { } byDefinition)
        {
            return new ToolApprovalNeed(byDefinition, $"the tool '{tool}' requires approval");
        }

        foreach (var (rule, limits) in policies.RulesFor(workflowType, startedBy, tool))
        {
            if (limits.RequireApproval is { } byPolicy)
            {
                return new ToolApprovalNeed(byPolicy, $"policy {rule} requires approval of '{tool}'");
            }

            if (limits.MinConfidence is { } gate && (confidence ?? 0) < gate)
            {
                var approvers = limits.ConfidenceApproval ?? registered.Definition.Approval;
                if (approvers is not null)
                {
                    var stated = confidence is { } c ? c.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture) : "none";
                    return new ToolApprovalNeed(approvers, $"the call's confidence ({stated}) is below policy {rule}'s gate ({gate:0.##})");
                }
            }
        }

        return null;
    }

    /// <summary>
    /// The approval a call's approval step journaled, rebuilt as it was asked, when the journal has one at
    /// <paramref name="step"/>: a request once asked stands (today's definition, policies and call counts do not
    /// change it, or skip it while it waits). Null when the journal asked nothing there.
    /// </summary>
    /// <exception cref="NonDeterminismException">The journal asked about another call at this step.</exception>
    internal static ApprovalRequest? Journaled(IStepRun run, int step, string tool, JsonElement arguments)
    {
        var asked = run.EventsOf(step).FirstOrDefault(e => e.Kind == JournalKind.ApprovalRequested);
        if (asked is null)
        {
            return null;
        }

        var name = StepName(tool);
        var requested = RunPayloads.Read<ApprovalRequestedPayload>(asked.Payload);
        bool sameCall;
        using (var document = requested.ProposedActionJson is { } json ? JsonDocument.Parse(json) : null)
        {
            var proposed = document?.RootElement ?? default;
            sameCall = asked.Name == RunPayloads.Clean(name)
                && proposed.ValueKind == JsonValueKind.Object
                && proposed.TryGetProperty("tool", out var proposedTool) && proposedTool.ValueKind == JsonValueKind.String && proposedTool.GetString() == tool
                && proposed.TryGetProperty("arguments", out var proposedArguments)
                && RunPayloads.ArgumentsHash(proposedArguments) == RunPayloads.ArgumentsHash(arguments);
        }

        if (!sameCall)
        {
            throw new NonDeterminismException(run.RunId, step, $"Approval '{asked.Name}' of {requested.ProposedActionJson ?? "no proposed action"}",
                $"a call of '{tool}' with other arguments");
        }

        // The deadline and escalation are read from the journal again by the gate; the timeout only has to be valid.
        var timeout = requested.Deadline - asked.RecordedAt;
        timeout = timeout < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : timeout > TimeSpan.FromDays(3650) ? TimeSpan.FromDays(3650) : timeout;
        return new ApprovalRequest(name, requested.Question, requested.ApproverRoles, timeout)
        {
            ProposedActionJson = requested.ProposedActionJson,
            OnTimeout = requested.OnTimeout,
            EscalateTo = requested.EscalateTo,
        };
    }

    /// <summary>The approval request for a call that needs one: the proposed action is the call itself.</summary>
    internal static ApprovalRequest Request(string tool, JsonElement arguments, double? confidence, ToolApprovalNeed need) =>
        new(StepName(tool), $"Approve a call of '{tool}'? ({need.Reason})", need.Approval.ApproverRoles.ToList(), need.Approval.Timeout)
        {
            ProposedActionJson = JsonSerializer.Serialize(new { tool, arguments, confidence, reason = need.Reason }, Workflows.SpineJson.Options),
            OnTimeout = need.Approval.OnTimeout,
            EscalateTo = need.Approval.EscalateTo,
        };
}
