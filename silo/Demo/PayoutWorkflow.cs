using System.Text.Json;
using Spine.Approvals;
using Spine.Storage;
using Spine.Workflows;

namespace Spine.Silo.Demo;

/// <summary>The input of <see cref="PayoutWorkflow"/>.</summary>
/// <param name="Amount">What is paid out, in cents.</param>
/// <param name="ApproverRole">Who may approve it.</param>
/// <param name="TimeoutSeconds">How long they have.</param>
/// <param name="EscalateToRole">Who decides when they do not (null: the deadline rejects).</param>
/// <param name="EscalateTimeoutSeconds">How long the escalation's approvers have; their deadline rejects.</param>
public sealed record PayoutInput(long Amount, string ApproverRole = "approver", int TimeoutSeconds = 3600, string? EscalateToRole = null, int EscalateTimeoutSeconds = 3600);

/// <summary>The result of <see cref="PayoutWorkflow"/>.</summary>
/// <param name="Paid">Whether the payout was applied.</param>
/// <param name="Decision">How its approval ended.</param>
public sealed record PayoutOutput(bool Paid, ApprovalDecision Decision);

/// <summary>
/// A payout that a human approves first: the run waits in AwaitingApproval until an approver decides or the
/// deadline acts (escalating to a second role when one is named), then applies the payout to the demo ledger.
/// </summary>
[Workflow("payout")]
public sealed class PayoutWorkflow(SpineDatabase database) : IWorkflow<PayoutInput, PayoutOutput>
{
    /// <inheritdoc />
    public async Task<PayoutOutput> RunAsync(IWorkflowContext context, PayoutInput input)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(input);
        var request = new ApprovalRequest("payout", $"Pay out {input.Amount / 100m:0.00}?", [input.ApproverRole], TimeSpan.FromSeconds(input.TimeoutSeconds))
        {
            ProposedActionJson = JsonSerializer.Serialize(new { action = "payout", amount = input.Amount }),
            OnTimeout = input.EscalateToRole is null ? ApprovalTimeoutAction.Reject : ApprovalTimeoutAction.Escalate,
            EscalateTo = input.EscalateToRole is null ? null : new ApprovalEscalation([input.EscalateToRole], TimeSpan.FromSeconds(input.EscalateTimeoutSeconds)),
        };
        var decision = await context.RequestApprovalAsync(request);
        if (!decision.Approved)
        {
            return new PayoutOutput(false, decision);
        }

        await context.RunAsync("apply-payout", s => DemoLedger.ApplyAsync(database, s.IdempotencyKey, s.RunId, 1, s.CancellationToken));
        return new PayoutOutput(true, decision);
    }
}
