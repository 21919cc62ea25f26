using System.Security.Claims;
using System.Text.Json;
using Spine.Approvals;
using Spine.Budgets;
using Spine.Client;
using Spine.Runs;

namespace Spine.Silo.Admin;

/// <summary>
/// The admin HTTP API under <c>/api/v1</c>: every endpoint needs an API key (<see cref="ApiKeyAuthenticationHandler"/>)
/// and checks a role (<see cref="AdminRoles"/>); what it changes is journaled with the key's identity as the actor.
/// Errors are problem responses (<see cref="AdminProblems"/>).
/// </summary>
internal static class AdminApi
{
    /// <summary>The API's path prefix.</summary>
    public const string Prefix = "/api/v1";

    /// <summary>Maps the API's endpoints.</summary>
    public static IEndpointRouteBuilder MapSpineAdminApi(this IEndpointRouteBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var api = app.MapGroup(Prefix)
            .RequireAuthorization(AdminRoles.ReadPolicy)
            .AddEndpointFilter<AdminProblems>()
            .WithTags("Spine");

        api.MapGet("/me", (ClaimsPrincipal user) =>
        {
            var actor = ApiKeyAuthenticationHandler.ActorOf(user);
            return new CallerView(actor.Id, actor.Roles);
        }).WithSummary("The caller's identity and roles.");

        MapRuns(api);
        MapApprovals(api);
        MapDeadLetters(api);
        MapCluster(api);
        MapAudit(api);
        return app;
    }

    private static void MapRuns(RouteGroupBuilder api)
    {
        api.MapGet("/runs", (ISpineClient spine, RunStatus? status, string? type, string? account, int? limit, CancellationToken ct) =>
                spine.ListAsync(new RunQuery { Status = status, WorkflowType = type, AccountId = account, Limit = limit ?? 100 }, ct))
            .WithSummary("Runs, newest first, filtered by status, workflow type and account.");

        api.MapGet("/runs/{runId}", (ISpineClient spine, string runId, CancellationToken ct) => spine.GetAsync(runId, ct))
            .WithSummary("One run's snapshot.");

        api.MapGet("/runs/{runId}/journal", (ISpineClient spine, string runId, CancellationToken ct) => spine.GetJournalAsync(runId, ct))
            .WithSummary("One run's journal rows.");

        api.MapGet("/runs/{runId}/timeline", async (ISpineClient spine, string runId, CancellationToken ct) =>
            {
                var run = await spine.GetAsync(runId, ct);
                return new RunTimelineView(run, RunTimeline.Of(await spine.GetJournalAsync(runId, ct)));
            })
            .WithSummary("One run and its journal as a timeline: step latency, tokens, cost and actor.");

        api.MapPost("/runs/{runId}/cancel", (ISpineClient spine, ClaimsPrincipal user, string runId, ReasonBody? body, CancellationToken ct) =>
                spine.CancelAsync(runId, body?.Reason, ApiKeyAuthenticationHandler.ActorOf(user), ct))
            .RequireAuthorization(AdminRoles.OperatePolicy)
            .WithSummary("Cancels a run (operator).");

        api.MapPost("/runs/{runId}/signals", async (ISpineClient spine, ClaimsPrincipal user, string runId, SignalBody body, CancellationToken ct) =>
                body.Payload.ValueKind == JsonValueKind.Undefined
                    ? AdminProblems.Problem("invalid_payload", "The signal has no payload: send {\"name\": ..., \"payload\": <any JSON>}.")
                    : Results.Ok(await spine.SignalAsync(runId, new SignalRequest(body.Name, body.Payload.GetRawText(), body.SignalId, ApiKeyAuthenticationHandler.ActorOf(user)), ct)))
            .RequireAuthorization(AdminRoles.OperatePolicy)
            .WithSummary("Sends a signal to a run (operator).");

        api.MapPost("/runs/{runId}/replay", ReplayAsync)
            .RequireAuthorization(AdminRoles.OperatePolicy)
            .WithSummary("Forks a new run from a finished one, from a step, with changed input or parameters (operator).");

        api.MapPost("/runs/{runId}/escalation", (ISpineClient spine, ClaimsPrincipal user, string runId, EscalationBody body, CancellationToken ct) =>
                spine.ResolveEscalationAsync(runId, new OperatorDecision(body.Action, body.Result?.GetRawText(), body.Reason,
                    ApiKeyAuthenticationHandler.ActorOf(user), body.Step), ct))
            .RequireAuthorization(AdminRoles.OperatePolicy)
            .WithSummary("Decides on a run awaiting an operator: retry, skip with a result, or fail (operator).");
    }

    private static void MapApprovals(RouteGroupBuilder api)
    {
        api.MapGet("/approvals", (ISpineClient spine, string? account, string? role, int? limit, CancellationToken ct) =>
                spine.ListApprovalsAsync(new ApprovalQuery { AccountId = account, Role = role, Limit = limit ?? 100 }, ct))
            .WithSummary("The approvals runs wait for, by account and by the role that may decide them.");

        api.MapPost("/runs/{runId}/approval/approve", (ISpineClient spine, ClaimsPrincipal user, string runId, DecisionBody? body, CancellationToken ct) =>
                DecideAsync(spine, user, runId, true, body, ct))
            .RequireAuthorization(AdminRoles.ApprovePolicy)
            .WithSummary("Approves what a run waits for (approver, holding one of the approval's roles).");

        api.MapPost("/runs/{runId}/approval/reject", (ISpineClient spine, ClaimsPrincipal user, string runId, DecisionBody? body, CancellationToken ct) =>
                DecideAsync(spine, user, runId, false, body, ct))
            .RequireAuthorization(AdminRoles.ApprovePolicy)
            .WithSummary("Rejects what a run waits for (approver, holding one of the approval's roles).");
    }

    private static void MapDeadLetters(RouteGroupBuilder api)
    {
        api.MapGet("/dlq", (ISpineClient spine, int? limit, CancellationToken ct) => spine.ListDeadLettersAsync(limit ?? 100, ct))
            .WithSummary("The dead-letter queue, newest first, with each run's failing step and error.");

        api.MapPost("/dlq/{runId}/replay", ReplayAsync)
            .RequireAuthorization(AdminRoles.OperatePolicy)
            .WithSummary("Replays a dead-lettered run as a new run, from its failing step unless told otherwise (operator).");

        api.MapPost("/dlq/{runId}/discard", (ISpineClient spine, ClaimsPrincipal user, string runId, ReasonBody? body, CancellationToken ct) =>
                spine.DiscardAsync(runId, body?.Reason, ApiKeyAuthenticationHandler.ActorOf(user), ct))
            .RequireAuthorization(AdminRoles.OperatePolicy)
            .WithSummary("Removes a run from the dead-letter queue; its journal stays (operator).");
    }

    private static void MapCluster(RouteGroupBuilder api)
    {
        api.MapGet("/breakers", async (ISpineClient spine, CancellationToken ct) =>
            {
                var tools = (await spine.GetToolsAsync(null, ct)).Select(t => t.Name).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal);
                return await Task.WhenAll(tools.Select(t => spine.GetBreakerAsync(t, ct)));
            })
            .WithSummary("Every tool's circuit breaker.");

        api.MapGet("/breakers/{tool}", (ISpineClient spine, string tool, CancellationToken ct) => spine.GetBreakerAsync(tool, ct))
            .WithSummary("One tool's circuit breaker.");

        api.MapPost("/breakers/{tool}/reset", (ISpineClient spine, ClaimsPrincipal user, ILogger<AdminProblems> log, string tool, CancellationToken ct) =>
            {
                // A breaker's reset is not part of any run's journal: the silo's log records who did it.
                log.LogInformation("Circuit breaker of tool {Tool} reset by {Actor}", tool, ApiKeyAuthenticationHandler.ActorOf(user));
                return spine.ResetBreakerAsync(tool, ct);
            })
            .RequireAuthorization(AdminRoles.OperatePolicy)
            .WithSummary("Closes a tool's circuit breaker (operator).");

        api.MapGet("/budgets/{account}", (ISpineClient spine, string account, CancellationToken ct) => spine.GetBudgetAsync(account, ct))
            .WithSummary("An account's ceilings, and spent, reserved and remaining tokens and cost per window.");

        api.MapPut("/budgets/{account}", (ISpineClient spine, ClaimsPrincipal user, string account, BudgetCeilings ceilings, CancellationToken ct) =>
                spine.SetBudgetAsync(account, ceilings, ApiKeyAuthenticationHandler.ActorOf(user), ct))
            .RequireAuthorization(AdminRoles.OperatePolicy)
            .WithSummary("Sets an account's ceilings (operator).");

        api.MapGet("/policies", (ISpineClient spine, CancellationToken ct) => spine.GetPoliciesAsync(ct))
            .WithSummary("The run policies the cluster enforces.");

        api.MapGet("/tools", (ISpineClient spine, string? tool, CancellationToken ct) => spine.GetToolsAsync(tool, ct))
            .WithSummary("The cluster's tools: contracts by version and the runs that pin each.");

        api.MapGet("/rate-limits", (ISpineClient spine, string? account, CancellationToken ct) => spine.GetRateLimitsAsync(account, ct))
            .WithSummary("The cluster's rate limits and their state.");

        api.MapGet("/costs", async (ISpineClient spine, int? hours, CancellationToken ct) => hours is < 1 or > 168
                ? AdminProblems.Problem("invalid_argument", $"hours is {hours}: it must be between 1 and 168.")
                : Results.Ok(await spine.GetCostsAsync(TimeSpan.FromHours(hours ?? 24), ct)))
            .WithSummary("Spend per workflow type and hour of the runs that ended in the last `hours` (1 to 168, default 24).");

        api.MapGet("/alerts", (ISpineClient spine, string? type, DateTimeOffset? since, int? limit, CancellationToken ct) =>
                spine.ListAlertsAsync(new Spine.Alerts.AlertQuery { WorkflowType = type, Since = since, Limit = limit ?? 100 }, ct))
            .WithSummary("Anomaly alerts, newest first.");

        api.MapGet("/slo", (ISpineClient spine, string? type, CancellationToken ct) => spine.GetSloAsync(type, ct))
            .WithSummary("End-to-end success rate per workflow type over rolling windows, with error budget and burn rate.");
    }

    private static void MapAudit(RouteGroupBuilder api)
    {
        api.MapGet("/audit/verify", async (ISpineClient spine, string? run, int? max, CancellationToken ct) =>
                run is null ? Results.Ok(await spine.VerifyAllJournalsAsync(max ?? 100, ct)) : Results.Ok(await spine.VerifyJournalAsync(run, ct)))
            .WithSummary("Verifies one run's journal (run=...) or every run's: keyed hash chain, head anchor and index row.");

        api.MapGet("/audit/export", async (HttpContext http, ISpineClient spine, string? run, DateTimeOffset? since, CancellationToken ct) =>
            {
                // The first row is read before the response starts, so that an unknown run is still a problem response.
                await using var rows = spine.ExportAuditAsync(run, since, ct).GetAsyncEnumerator(ct);
                var any = await rows.MoveNextAsync();
                http.Response.ContentType = "application/x-ndjson";
                var json = http.RequestServices.GetRequiredService<Microsoft.Extensions.Options.IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions>>().Value.SerializerOptions;
                while (any)
                {
                    await http.Response.WriteAsync(JsonSerializer.Serialize(rows.Current, json) + "\n", ct);
                    any = await rows.MoveNextAsync();
                }

                return Results.Empty;
            })
            .WithSummary("Journal rows of one run (run=...) or of every run since a time (since=...), as JSON lines for a SIEM.");
    }

    private static Task<RunInfo> ReplayAsync(ISpineClient spine, ClaimsPrincipal user, string runId, ReplayBody? body, CancellationToken ct) =>
        spine.ReplayAsync(new ReplayRequest(runId, body?.FromStep, body?.Input?.GetRawText(), body?.Parameters, body?.IdempotencyKey,
            ApiKeyAuthenticationHandler.ActorOf(user)), ct);

    private static async Task<RunInfo> DecideAsync(ISpineClient spine, ClaimsPrincipal user, string runId, bool approve, DecisionBody? body, CancellationToken ct)
    {
        var actor = ApiKeyAuthenticationHandler.ActorOf(user);
        var role = body?.Role;
        if (role is null)
        {
            // The first of the waiting approval's roles the caller holds; the run refuses a caller holding none.
            var run = await spine.GetAsync(runId, ct);
            var pending = run.Approvals.FirstOrDefault(a => body?.Step is null || a.Step == body.Step);
            role = pending?.ApproverRoles.FirstOrDefault(actor.HasRole) ?? actor.Roles.FirstOrDefault() ?? AdminRoles.Approver;
        }

        return await spine.DecideApprovalAsync(runId, new ApprovalVerdict(approve, role, body?.Comment, body?.Step, actor), ct);
    }
}
