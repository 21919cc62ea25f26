using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Admin;

/// <summary>
/// The admin HTTP API of a real silo process: API keys map to identities and roles, each endpoint checks its role,
/// errors are typed problem responses, and what the API decides is journaled with the key's identity.
/// </summary>
public sealed class AdminApiTests(AdminApiFixture fixture) : IClassFixture<AdminApiFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Request_WithoutKeyOrWithUnknownKey_IsRefused401AndAKnownKeyIsWhoItSays()
    {
        using var anonymous = fixture.Http(null);
        using var stranger = fixture.Http("not-a-configured-key-000000");
        using var viaHeader = fixture.Http(null);
        viaHeader.DefaultRequestHeaders.Add("X-Spine-Key", AdminApiFixture.ApproverKey);

        var none = await anonymous.GetAsync("/api/v1/runs");
        var unknown = await stranger.GetAsync("/api/v1/runs");
        var me = await viaHeader.GetFromJsonAsync<JsonElement>("/api/v1/me");

        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        Assert.Contains("Bearer", none.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Unauthorized, unknown.StatusCode);
        Assert.Equal("ann", me.GetProperty("id").GetString());
        Assert.Equal(["approver", "finance"], me.GetProperty("roles").EnumerateArray().Select(r => r.GetString()!));
    }

    [Fact]
    public async Task EveryChange_IsRefused403ToRolesThatMayNotMakeIt_AndChangesNothing()
    {
        var waiting = await StartPayoutAsync();
        var dead = await DeadLetterAsync();
        var waitingRows = (await fixture.Client.GetJournalAsync(waiting)).Count;
        var deadRows = (await fixture.Client.GetJournalAsync(dead)).Count;
        var runs = (await fixture.Client.ListAsync(new RunQuery { Limit = 10_000 })).Count;
        using var viewer = fixture.Http(AdminApiFixture.ViewerKey);
        using var approver = fixture.Http(AdminApiFixture.ApproverKey);
        using var @operator = fixture.Http(AdminApiFixture.OperatorKey);
        (string Path, object Body)[] operatorOnly =
        [
            ($"/api/v1/runs/{waiting}/cancel", new { reason = "no" }),
            ($"/api/v1/runs/{waiting}/signals", new { name = "poke", payload = new { } }),
            ($"/api/v1/runs/{dead}/replay", new { }),
            ($"/api/v1/dlq/{dead}/replay", new { }),
            ($"/api/v1/dlq/{dead}/discard", new { reason = "no" }),
            ($"/api/v1/runs/{dead}/escalation", new { action = "Retry" }),
            ("/api/v1/breakers/ledger_apply/reset", new { }),
        ];
        (string Path, object Body)[] approverOnly =
        [
            ($"/api/v1/runs/{waiting}/approval/approve", new { comment = "yes" }),
            ($"/api/v1/runs/{waiting}/approval/reject", new { comment = "no" }),
        ];

        foreach (var (path, body) in operatorOnly)
        {
            Assert.Equal(HttpStatusCode.Forbidden, (await viewer.PostAsJsonAsync(path, body)).StatusCode);
            Assert.Equal(HttpStatusCode.Forbidden, (await approver.PostAsJsonAsync(path, body)).StatusCode);
        }

        foreach (var (path, body) in approverOnly)
        {
            Assert.Equal(HttpStatusCode.Forbidden, (await viewer.PostAsJsonAsync(path, body)).StatusCode);
            Assert.Equal(HttpStatusCode.Forbidden, (await @operator.PostAsJsonAsync(path, body)).StatusCode);
        }

        Assert.Equal(HttpStatusCode.Forbidden, (await viewer.PutAsJsonAsync("/api/v1/budgets/acme", new { dailyTokens = 1 })).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await approver.PutAsJsonAsync("/api/v1/budgets/acme", new { dailyTokens = 1 })).StatusCode);

        // Every role reads.
        foreach (var reader in new[] { viewer, approver, @operator })
        {
            Assert.Equal(HttpStatusCode.OK, (await reader.GetAsync($"/api/v1/runs/{waiting}")).StatusCode);
        }

        // Nothing was cancelled, signalled, decided, replayed or discarded: both journals are as they were, and no run was added.
        Assert.Equal(RunStatus.AwaitingApproval, (await fixture.Client.GetAsync(waiting)).Status);
        Assert.Equal(RunStatus.DeadLettered, (await fixture.Client.GetAsync(dead)).Status);
        Assert.Equal(waitingRows, (await fixture.Client.GetJournalAsync(waiting)).Count);
        Assert.Equal(deadRows, (await fixture.Client.GetJournalAsync(dead)).Count);
        Assert.Equal(runs, (await fixture.Client.ListAsync(new RunQuery { Limit = 10_000 })).Count);
    }

    [Fact]
    public async Task Approver_DecidesAsTheApprovalsRole_RunCompletes_TimelineAndJournalNameTheApprover()
    {
        var runId = await StartPayoutAsync();
        using var approver = fixture.Http(AdminApiFixture.ApproverKey);
        using var legal = fixture.Http(AdminApiFixture.LegalApproverKey);

        var inbox = await approver.GetFromJsonAsync<JsonElement>("/api/v1/approvals?role=finance");
        Assert.Contains(inbox.EnumerateArray(), a => a.GetProperty("runId").GetString() == runId);

        // An approver, but not of a role this approval accepts: refused by the run, with its typed error.
        var wrongRole = await legal.PostAsJsonAsync($"/api/v1/runs/{runId}/approval/approve", new { comment = "mine" });
        await AssertProblemAsync(wrongRole, HttpStatusCode.Forbidden, "approval_forbidden");

        var approved = await approver.PostAsJsonAsync($"/api/v1/runs/{runId}/approval/approve", new { comment = "within limits" });
        Assert.Equal(HttpStatusCode.OK, approved.StatusCode);
        var done = await fixture.Client.WaitAsync(runId, Patience);
        Assert.Equal(RunStatus.Completed, done.Status);

        var again = await approver.PostAsJsonAsync($"/api/v1/runs/{runId}/approval/reject", new { comment = "changed my mind" });
        await AssertProblemAsync(again, HttpStatusCode.Conflict, "approval_not_pending");

        var timeline = await approver.GetFromJsonAsync<JsonElement>($"/api/v1/runs/{runId}/timeline");
        Assert.Equal("Completed", timeline.GetProperty("run").GetProperty("status").GetString());
        var entries = timeline.GetProperty("entries").EnumerateArray().ToList();
        var decided = entries.Single(e => e.GetProperty("kind").GetString() == "Approval");
        Assert.Equal("ann", decided.GetProperty("actor").GetProperty("id").GetString());
        Assert.Contains(entries, e => e.GetProperty("kind").GetString() == "Step" && e.GetProperty("latencyMs").GetDouble() >= 0);
        Assert.Equal(entries.Count, (await fixture.Client.GetJournalAsync(runId)).Count);
    }

    [Fact]
    public async Task Operator_ReplaysAndDiscardsDeadLetters_AndBadRequestsGetTypedProblems()
    {
        var dead = await DeadLetterAsync();
        var other = await DeadLetterAsync();
        using var @operator = fixture.Http(AdminApiFixture.OperatorKey);

        var queue = await @operator.GetFromJsonAsync<JsonElement>("/api/v1/dlq");
        Assert.Contains(queue.EnumerateArray(), r => r.GetProperty("runId").GetString() == dead);

        var replayed = await @operator.PostAsJsonAsync($"/api/v1/dlq/{dead}/replay", new { input = new { steps = 1, failureRate = 0.0 } });
        Assert.Equal(HttpStatusCode.OK, replayed.StatusCode);
        var replay = (await replayed.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("runId").GetString()!;
        var replayDone = await fixture.Client.WaitAsync(replay, Patience);
        Assert.Equal(RunStatus.Completed, replayDone.Status);
        Assert.Equal("otto", replayDone.StartedBy!.Id);

        var discarded = await @operator.PostAsJsonAsync($"/api/v1/dlq/{other}/discard", new { reason = "known bad input" });
        Assert.Equal(HttpStatusCode.OK, discarded.StatusCode);
        Assert.Equal(RunStatus.Discarded, (await fixture.Client.GetAsync(other)).Status);
        var discardRow = (await fixture.Client.GetJournalAsync(other)).Last();
        Assert.Contains("\"otto\"", discardRow.PayloadJson, StringComparison.Ordinal);

        // A discard of a run no longer in the queue, an unknown run, a negative ceiling, a body that is not JSON.
        await AssertProblemAsync(await @operator.PostAsJsonAsync($"/api/v1/dlq/{other}/discard", new { }), HttpStatusCode.Conflict, "invalid_run_state");
        await AssertProblemAsync(await @operator.GetAsync("/api/v1/runs/r-no-such-run"), HttpStatusCode.NotFound, "run_not_found");
        await AssertProblemAsync(await @operator.GetAsync("/api/v1/costs?hours=2000000000"), HttpStatusCode.BadRequest, "invalid_argument");
        Assert.Equal(HttpStatusCode.OK, (await @operator.GetAsync("/api/v1/costs?hours=2")).StatusCode);
        await AssertProblemAsync(await @operator.PutAsJsonAsync("/api/v1/budgets/acme-admin", new { dailyTokens = -5 }), HttpStatusCode.BadRequest, "invalid_payload");
        var malformed = await @operator.PostAsync($"/api/v1/runs/{dead}/signals", new StringContent("{not json", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);
        await AssertProblemAsync(await @operator.PostAsJsonAsync($"/api/v1/runs/{dead}/signals", new { name = "poke" }), HttpStatusCode.BadRequest, "invalid_payload");
        Assert.Equal(RunStatus.DeadLettered, (await fixture.Client.GetAsync(dead)).Status);
    }

    [Fact]
    public async Task Viewer_ReadsClusterStateAuditAndTheOpenApiDocument()
    {
        var runId = await StartPayoutAsync();
        await fixture.Client.CancelAsync(runId, "test over");
        await fixture.Client.WaitAsync(runId, Patience);
        using var viewer = fixture.Http(AdminApiFixture.ViewerKey);

        foreach (var path in new[] { "/api/v1/breakers", "/api/v1/policies", "/api/v1/tools", "/api/v1/slo", "/api/v1/rate-limits", "/api/v1/runs?type=payout&limit=5" })
        {
            var response = await viewer.GetAsync(path);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }

        var verify = await viewer.GetFromJsonAsync<JsonElement>($"/api/v1/audit/verify?run={runId}");
        Assert.True(verify.GetProperty("intact").GetBoolean());

        var export = await viewer.GetAsync($"/api/v1/audit/export?run={runId}");
        Assert.Equal("application/x-ndjson", export.Content.Headers.ContentType?.MediaType);
        var lines = (await export.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal((await fixture.Client.GetJournalAsync(runId)).Count, lines.Length);
        Assert.All(lines, l => Assert.Equal(runId, JsonDocument.Parse(l).RootElement.GetProperty("runId").GetString()));

        using var anonymous = fixture.Http(null);
        var document = await anonymous.GetFromJsonAsync<JsonElement>("/api/openapi/v1.json");
        var paths = document.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Contains("/api/v1/runs/{runId}/timeline", paths);
        Assert.Contains("/api/v1/runs/{runId}/approval/approve", paths);
        Assert.Contains("/api/v1/dlq/{runId}/replay", paths);
    }

    private async Task<string> StartPayoutAsync()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(12_500, ApproverRole: "finance"));
        var waiting = await fixture.Client.WaitForStatusAsync(run.RunId, RunStatus.AwaitingApproval, Patience);
        Assert.Equal(RunStatus.AwaitingApproval, waiting.Status);
        return run.RunId;
    }

    private async Task<string> DeadLetterAsync()
    {
        var run = await fixture.Client.StartAsync("chaos", new ChaosInput(Steps: 1, FailureRate: 1.0, RetryDelayMilliseconds: 20, MaxAttempts: 2));
        var done = await fixture.Client.WaitAsync(run.RunId, Patience);
        Assert.Equal(RunStatus.DeadLettered, done.Status);
        return run.RunId;
    }

    private static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string kind)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("urn:spine:error:" + kind, JsonDocument.Parse(body).RootElement.GetProperty("type").GetString());
    }
}
