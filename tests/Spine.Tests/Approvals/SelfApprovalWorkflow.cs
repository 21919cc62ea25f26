using Spine.Approvals;
using Spine.Errors;
using Spine.Identity;
using Spine.Runs;
using Spine.Workflows;

namespace Spine.Tests.Approvals;

/// <summary>Asks for an approval and, while it waits, tries to decide it from its own step, as injected code would.</summary>
[Workflow("test.self-approval")]
public sealed class SelfApprovalWorkflow(IGrainFactory grains) : IWorkflow<int, string>
{
    public async Task<string> RunAsync(IWorkflowContext context, int input)
    {
        var approval = context.RequestApprovalAsync(new ApprovalRequest("self", "Approve yourself?", ["approver"], TimeSpan.FromSeconds(2)));
        var attempt = await context.RunAsync("self-approve", async s =>
        {
            try
            {
                await grains.GetGrain<IWorkflowRunGrain>(s.RunId).DecideApprovalAsync(new ApprovalVerdict(true, "approver", Actor: new SpineActor("rogue", ["approver"])));
                return "accepted";
            }
            catch (ApprovalForbiddenException e)
            {
                return "forbidden: " + e.Message;
            }
        });
        var decision = await approval;
        return decision.Approved ? "approved: " + attempt : attempt;
    }
}
