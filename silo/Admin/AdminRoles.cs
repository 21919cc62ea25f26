namespace Spine.Silo.Admin;

/// <summary>The roles the admin API checks, and the authorization policies named after them.</summary>
internal static class AdminRoles
{
    /// <summary>Reads runs, journals, approvals, the DLQ, breakers, budgets, policies, SLOs, alerts and the audit.</summary>
    public const string Viewer = "viewer";

    /// <summary>Decides approvals (as one of the approval's roles the caller also holds); reads too.</summary>
    public const string Approver = "approver";

    /// <summary>Acts on runs and the cluster: cancel, signal, replay, discard, escalations, breakers, budgets; reads too.</summary>
    public const string Operator = "operator";

    /// <summary>The policy of every read: any of the three roles.</summary>
    public const string ReadPolicy = "spine.read";

    /// <summary>The policy of approval decisions.</summary>
    public const string ApprovePolicy = "spine.approve";

    /// <summary>The policy of operator actions.</summary>
    public const string OperatePolicy = "spine.operate";

    /// <summary>The Orleans Dashboard's policy off loopback: an operator, by key or signed in to the console.</summary>
    public const string DashboardPolicy = "spine.dashboard";
}
