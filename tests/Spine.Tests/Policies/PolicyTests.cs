using System.Text.Json;
using Spine.Agents;
using Spine.Errors;
using Spine.Identity;
using Spine.Policies;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Policies;

/// <summary>Run policies through the agent loop on a real silo: what the model is shown, what it may call, and what is journaled.</summary>
[Collection(ClusterCollection.Name)]
public sealed class PolicyTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private static readonly SpineActor Analyst = new("ann", ["analyst"]);

    /// <summary>The rule the test cluster runs analysts' agents under.</summary>
    public static PolicyRule AnalystRule()
    {
        var rule = new PolicyRule { Name = "analysts", Workflow = "agent", Role = "analyst", MaxToolCalls = 6, ChatClients = ["adversary"] };
        rule.Tools["calculator"] = new ToolRule { MaxCalls = 2, Arguments = """{"properties":{"expression":{"type":"string","maxLength":20}}}""" };
        rule.Tools["text_stats"] = new ToolRule { Versions = "[2.0.0,3.0.0)" };
        rule.Tools[InjectingTool.Name] = new ToolRule();
        return rule;
    }

    [Fact]
    public async Task TheModel_IsShownOnlyPermittedTools_AndEveryCallOutsidePolicyIsDeniedJournaledAndNeverRuns()
    {
        var run = await fixture.Client.StartRequest("mixed", Analyst);

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        // Denied: a tool not shown, arguments over the limit, a version outside the range; the third denial fails the run.
        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("policy_denied", done.Error!.Kind);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        var denied = journal.Where(r => r.Kind == "PolicyDenied").Select(r => (r.Name, Rule: Payload(r).GetProperty("rule").GetString(), Reason: Payload(r).GetProperty("reason").GetString()!)).ToList();
        Assert.Equal(["notes_append", "calculator", "text_stats"], denied.Select(d => d.Name));
        Assert.Equal("the workflow's own tool list", denied[0].Rule);
        Assert.Equal("analysts", denied[1].Rule);
        Assert.Contains("at most 20 characters", denied[1].Reason, StringComparison.Ordinal);
        Assert.Contains("outside", denied[2].Reason, StringComparison.Ordinal);
        Assert.Equal(["error", "error", "ok", "error"], journal.Where(r => r.Kind == "Tool").Select(r => r.Outcome));
        Assert.Equal(0L, await fixture.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_notes WHERE run_id = @id", ("id", run.RunId)));
        var firstTurn = JsonDocument.Parse(journal.First(r => r.Kind == "Model").PayloadJson!).RootElement.GetRawText();
        Assert.DoesNotContain("exfiltrate calculator,notes_append", firstTurn, StringComparison.Ordinal);
        Assert.Contains("exfiltrate calculator,text_stats", firstTurn, StringComparison.Ordinal);
        Assert.True((await fixture.Client.VerifyJournalAsync(run.RunId)).Intact);
    }

    [Fact]
    public async Task ARunawayLoop_IsCutAtItsCallLimit_AndFailsAfterTheConfiguredDenials()
    {
        var run = await fixture.Client.StartRequest("runaway", Analyst);

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("policy_denied", done.Error!.Kind);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(2, journal.Count(r => r.Kind == "Tool" && r.Outcome == "ok"));
        Assert.Equal(3, journal.Count(r => r.Kind == "PolicyDenied"));
        Assert.All(journal.Where(r => r.Kind == "PolicyDenied"), r => Assert.Contains("the most it may (2)", Payload(r).GetProperty("reason").GetString(), StringComparison.Ordinal));
    }

    [Fact]
    public async Task AChatClientThePolicyDoesNotPermit_IsNeverCalled()
    {
        var run = await fixture.Client.StartAsync(new StartRunRequest("agent",
            JsonSerializer.Serialize(new AgentInput("anything", Tools: ["calculator"], ChatClient: "misbehaving"), SpineJsonForTests.Options), Actor: Analyst));

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);

        Assert.Equal(RunStatus.Failed, done.Status);
        Assert.Equal("policy_denied", done.Error!.Kind);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        Assert.Equal(["RunStarted", "PolicyDenied", "Model", "RunFailed"], journal.Select(r => r.Kind));
    }

    [Fact]
    public async Task ARunNoRuleMatches_IsNotLimited()
    {
        var run = await fixture.Client.StartAsync(new StartRunRequest("agent",
            JsonSerializer.Serialize(new AgentInput("mixed", Tools: ["calculator", "notes_append", "text_stats"], ChatClient: "adversary", MaxTurns: 1), SpineJsonForTests.Options)));

        var output = await fixture.Client.GetResultAsync<AgentOutput>(run.RunId);

        Assert.Single(output.ToolCalls);
        Assert.True(output.ToolCalls[0].Ok);
        Assert.DoesNotContain(await fixture.Client.GetJournalAsync(run.RunId), r => r.Kind == "PolicyDenied");
    }

    [Fact]
    public async Task AToolResultCarryingAPromptInjection_GetsTheModelNothingForbidden_AndEveryAttemptIsJournaled()
    {
        var run = await fixture.Client.StartAsync(new StartRunRequest("agent",
            JsonSerializer.Serialize(new AgentInput("injected", Tools: [InjectingTool.Name, "calculator", "notes_append", Approvals.GuardedTool.Name], ChatClient: "adversary", MaxTurns: 5), SpineJsonForTests.Options),
            Actor: Analyst));

        var done = await fixture.Client.WaitAsync(run.RunId, Patience);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        var output = JsonSerializer.Deserialize<AgentOutput>(done.ResultJson!, SpineJsonForTests.Options)!;

        // The model obeyed the page; the policy did not. The calls outside it are denied and journaled, the unknown
        // ones answered as unknown, and neither the note nor the payment nor any approval happened.
        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal(["notes_append", Approvals.GuardedTool.Name], journal.Where(r => r.Kind == "PolicyDenied").Select(r => r.Name).Order(StringComparer.Ordinal));
        Assert.Equal(["approvals_approve", "budgets_raise"], journal.Where(r => r.Kind == "Tool" && r.Outcome == "error" && r.PayloadJson!.Contains("unknown_tool", StringComparison.Ordinal)).Select(r => r.Name).Order(StringComparer.Ordinal));
        Assert.DoesNotContain(journal, r => r.Kind == "Tool" && r.Outcome == "ok" && r.Name != InjectingTool.Name);
        Assert.DoesNotContain(journal, r => r.Kind is "ApprovalRequested" or "Approval");
        Assert.Equal(0, Approvals.GuardedTool.Invocations.GetValueOrDefault(run.RunId));
        Assert.Equal(["not_permitted", "not_permitted", "unknown_tool", "unknown_tool"],
            output.ToolCalls.Where(c => !c.Ok).Select(c => c.Result.GetProperty("error").GetString()!).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task ThePolicies_AreShownAsConfigured()
    {
        var set = await fixture.Client.GetPoliciesAsync();

        var rule = set.Rules.Single(r => r.Name == "analysts");
        var interns = set.Rules.Single(r => r.Name == "interns");
        Assert.Equal(["lead"], interns.Tools.Single(t => t.Tool == "test_echo").ApprovalRoles);
        Assert.Equal(0.7, set.Rules.Single(r => r.Name == "gated").Tools.Single().MinConfidence);
        Assert.False(set.DenyByDefault);
        Assert.Equal(3, set.MaxDenials);
        Assert.Equal(("analysts", "agent", "analyst", 6), (rule.Name, rule.Workflow, rule.Role, rule.MaxToolCalls!.Value));
        Assert.Equal(["adversary"], rule.ChatClients);
        Assert.Equal("[2.0.0,3.0.0)", rule.Tools.Single(t => t.Tool == "text_stats").Versions);
        Assert.Contains("maxLength", rule.Tools.Single(t => t.Tool == "calculator").ArgumentsSchema, StringComparison.Ordinal);
    }

    private static JsonElement Payload(JournalEntryView row) => JsonDocument.Parse(row.PayloadJson!).RootElement;
}

internal static class SpineJsonForTests
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web);

    public static Task<RunInfo> StartRequest(this Spine.Client.ISpineClient client, string prompt, SpineActor actor) =>
        client.StartAsync(new StartRunRequest("agent",
            JsonSerializer.Serialize(new AgentInput(prompt, Tools: ["calculator", "notes_append", "text_stats"], ChatClient: "adversary", MaxTurns: 10), Options), Actor: actor));
}
