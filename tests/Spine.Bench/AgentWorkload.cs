using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Spine.Agents;
using Spine.Approvals;
using Spine.Budgets;
using Spine.Hosting;
using Spine.Identity;
using Spine.Policies;
using Spine.Runs;
using Spine.Tools;

namespace Spine.Bench;

/// <summary>
/// w10-agent: the agent loop with a scripted model, 5 model turns and 5 tool calls per run, many runs in flight;
/// first with the control plane off (no policy applies, no account), then on: a policy permits the tool and gates
/// the fifth call on its confidence (one approval per run, which the driver grants as an approver), and every run
/// is billed to an account whose ceiling it never reaches.
/// </summary>
internal static class AgentWorkload
{
    public const string ChatClient = "bench-agent";
    private const string Role = "bench-agent";
    private const string UngatedRole = "bench-agent-ungated";
    private const int Turns = 5;

    /// <summary>The bench silo's extra registrations: the scripted model, the tool and the policy rule.</summary>
    public static void Register(IServiceCollection services)
    {
        services.AddKeyedSingleton<IChatClient>(ChatClient, new TurnsChatClient());
        services.AddSpineTool<BenchEchoTool>();
        var rule = new PolicyRule { Name = "bench-agents", Workflow = "agent", Role = Role, MaxToolCalls = 10 };
        rule.Tools[BenchEchoTool.Name] = new ToolRule
        {
            MaxCalls = 10,
            Arguments = """{"properties":{"turn":{"maximum":10}}}""",
            MinConfidence = 0.7,
            ConfidenceApproval = new ToolApproval { ApproverRoles = ["bench-approver"], Timeout = TimeSpan.FromMinutes(10) },
        };
        services.AddSpinePolicy(rule);

        // The same without the confidence gate, for --parts without "approval".
        var ungated = new PolicyRule { Name = "bench-agents-ungated", Workflow = "agent", Role = UngatedRole, MaxToolCalls = 10 };
        ungated.Tools[BenchEchoTool.Name] = new ToolRule { MaxCalls = 10, Arguments = """{"properties":{"turn":{"maximum":10}}}""" };
        services.AddSpinePolicy(ungated);
    }

    /// <summary>Which parts of the control plane a phase turns on.</summary>
    public sealed record Parts(bool Policy, bool Budget, bool Approval)
    {
        public static Parts Off { get; } = new(false, false, false);

        public static Parts All { get; } = new(true, true, true);

        /// <summary>Parses <c>--parts policy,budget,approval</c> (a diagnostic: the figure is the control plane's only with all three).</summary>
        public static Parts Parse(string? list)
        {
            if (list is null)
            {
                return All;
            }

            var names = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var unknown = names.Except(["policy", "budget", "approval"]).ToList();
            if (unknown.Count > 0)
            {
                throw new ArgumentException($"--parts takes policy, budget and approval, not {string.Join(", ", unknown)}");
            }

            var approval = names.Contains("approval");
            return new Parts(names.Contains("policy") || approval, names.Contains("budget"), approval);
        }
    }

    public static async Task RunAsync(BenchEnvironment environment, int runs, int concurrency, int rounds, Parts parts, DbProfile? profile, Figures figures)
    {
        var account = "bench-agent-" + Guid.NewGuid().ToString("N");
        await environment.Client.SetBudgetAsync(account, new BudgetCeilings { TotalTokens = long.MaxValue / 4, TotalCost = 1_000_000_000m });
        if (parts != Parts.All)
        {
            Progress.Say($"DIAGNOSTIC: only {parts} of the control plane on (--parts); control_overhead is not the control plane's");
        }

        await WarmUpAsync(environment, concurrency, parts, account);

        // Off and on alternate, and each figure is the median of its rounds: one phase's figure swings with what
        // the machine does meanwhile, and alternating spreads that over both.
        var offSeconds = new List<double>();
        var onSeconds = new List<double>();
        for (var round = 1; round <= rounds; round++)
        {
            var jitBefore = System.Runtime.JitInfo.GetCompiledMethodCount();
            Progress.Say($"w10-agent: round {round} of {rounds}: {runs} runs ({Turns} model turns, {Turns} tool calls each), {concurrency} in flight, control plane off");
            var offPhase = PhaseProbe.Start(profile, environment.PostgresCpu);
            offSeconds.Add(await PhaseAsync(environment, runs, concurrency, Parts.Off, account));
            offPhase.Report("w10-agent off", offSeconds[^1], runs * 2 * Turns);
            Progress.Say($"w10-agent: round {round} of {rounds}: the same with the control plane on");
            var onPhase = PhaseProbe.Start(profile, environment.PostgresCpu);
            onSeconds.Add(await PhaseAsync(environment, runs, concurrency, parts, account));
            onPhase.Report("w10-agent on", onSeconds[^1], runs * 2 * Turns);
            Progress.Say($"w10-agent: round {round}: {runs * 2.0 * Turns / offSeconds[^1]:F1} steps/s off, {runs * 2.0 * Turns / onSeconds[^1]:F1} on ({System.Runtime.JitInfo.GetCompiledMethodCount() - jitBefore} methods JIT-compiled in the round)");
        }

        var steps = runs * 2.0 * Turns;
        var off = Stats.Percentile([.. offSeconds.Order()], 50);
        var on = Stats.Percentile([.. onSeconds.Order()], 50);
        figures.Add("steps_per_s_off", steps / off, "F1");
        figures.Add("steps_per_s_on", steps / on, "F1");
        figures.Add("control_overhead", 1 - (off / on), "F3");
        var budget = await environment.Client.GetBudgetAsync(account);
        figures.Add("budget_open_reservations", budget.Reservations, "F0");
    }

    /// <summary>
    /// Off and on batches in turn until the JIT is quiet (as w10 warms up): tiered compilation recompiles hot methods
    /// in the background long after they turn hot, and the "on" phase has more of them to recompile. At least 100 runs
    /// of each; done after 3 pairs in a row in which the JIT compiled at most 10 methods, or after 90 seconds.
    /// </summary>
    private static async Task WarmUpAsync(BenchEnvironment environment, int concurrency, Parts parts, string account)
    {
        var clock = Stopwatch.StartNew();
        var jitBefore = System.Runtime.JitInfo.GetCompiledMethodCount();
        await PhaseAsync(environment, 100, concurrency, Parts.Off, account);
        await PhaseAsync(environment, 100, concurrency, parts, account);
        var runs = 200;
        var quiet = 0;
        var compiled = 0L;
        while (quiet < 3 && clock.Elapsed < TimeSpan.FromSeconds(90))
        {
            var batchJit = System.Runtime.JitInfo.GetCompiledMethodCount();
            await PhaseAsync(environment, 128, concurrency, Parts.Off, account);
            await PhaseAsync(environment, 128, concurrency, parts, account);
            await Task.Delay(TimeSpan.FromMilliseconds(300));
            runs += 256;
            compiled = System.Runtime.JitInfo.GetCompiledMethodCount() - batchJit;
            quiet = compiled <= 10 ? quiet + 1 : 0;
        }

        Progress.Say($"w10-agent: warm-up done: {runs} runs in {clock.Elapsed.TotalSeconds:F1} s, {System.Runtime.JitInfo.GetCompiledMethodCount() - jitBefore} methods JIT-compiled, {compiled} in the last pair{(quiet < 3 ? " (gave up waiting for the JIT)" : "")}");
    }

    /// <summary>Runs <paramref name="runs"/> agent runs, <paramref name="concurrency"/> at a time; returns the seconds taken.</summary>
    private static async Task<double> PhaseAsync(BenchEnvironment environment, int runs, int concurrency, Parts parts, string account)
    {
        var client = environment.Client;
        var starter = !parts.Policy ? null : new SpineActor("bench-driver", [parts.Approval ? Role : UngatedRole]);
        var approver = new SpineActor("bench-approver", ["bench-approver"]);
        var input = new AgentInput("count the turns", Tools: [BenchEchoTool.Name], MaxTurns: Turns, ChatClient: ChatClient);
        var next = -1;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) is var i && i < runs)
            {
                var run = await client.StartAsync(new StartRunRequest("agent", JsonSerializer.Serialize(input, Workflows.SpineJson.Options), AccountId: parts.Budget ? account : null, Actor: starter));
                if (parts.Approval)
                {
                    // The driver is the approver: it grants the run's one approval as soon as the run asks.
                    var waiting = await client.WaitForStatusAsync(run.RunId, RunStatus.AwaitingApproval, TimeSpan.FromMinutes(5));
                    if (waiting.Status != RunStatus.AwaitingApproval)
                    {
                        throw new InvalidOperationException($"run {run.RunId} is {waiting.Status}, not awaiting its approval");
                    }

                    await client.DecideApprovalAsync(run.RunId, new ApprovalVerdict(true, "bench-approver", Actor: approver));
                }

                var done = await client.WaitAsync(run.RunId, TimeSpan.FromMinutes(5));
                if (done.Status != RunStatus.Completed)
                {
                    throw new InvalidOperationException($"run {run.RunId} ended {done.Status}: {done.Error?.Message}");
                }
            }
        }));
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>Asks for one echo per turn, sure of the first four, unsure of the fifth (which the gate sends to an approver).</summary>
    private sealed class TurnsChatClient : BenchChatClient
    {
        public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var turn = messages.Count(m => m.Role == ChatRole.Assistant) + 1;
            var call = new FunctionCallContent($"call_{turn}", BenchEchoTool.Name, new Dictionary<string, object?>
            {
                ["turn"] = turn,
                [AgentWorkflow.ConfidenceArgument] = turn < Turns ? 0.95 : 0.5,
            });
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, [call]))
            {
                ModelId = "bench-scripted",
                Usage = new UsageDetails { InputTokenCount = 100 * turn, OutputTokenCount = 20, TotalTokenCount = (100 * turn) + 20 },
            });
        }
    }

    /// <summary>Echoes its turn number.</summary>
    private sealed class BenchEchoTool : ITool
    {
        public const string Name = "bench_echo";

        public ToolDefinition Definition { get; } = new()
        {
            Name = Name,
            Version = "1.0.0",
            Description = "Echoes the turn.",
            InputSchema = """{"type":"object","properties":{"turn":{"type":"integer"}},"required":["turn"],"additionalProperties":false}""",
            OutputSchema = """{"type":"object","properties":{"turn":{"type":"integer"}},"required":["turn"]}""",
            Effect = ToolEffect.ReadOnly,
        };

        public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context) =>
            Task.FromResult(JsonSerializer.SerializeToElement(new { turn = arguments.GetProperty("turn").GetInt32() }));
    }
}
