using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using Spine.Client;
using Spine.Hosting;
using Spine.Silo.Demo;

namespace Spine.Tests.Infrastructure;

/// <summary>
/// An in-process Orleans test cluster whose silos run Spine on the shared PostgreSQL (grain storage,
/// reminders and the journal are real; membership is the test cluster's own).
/// </summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    /// <summary>The payload ceiling the test silos use (small, so the ceiling is cheap to hit).</summary>
    public const int MaxPayloadBytes = 64 * 1024;

    public InProcessTestCluster Cluster { get; private set; } = null!;

    public TestPostgres Postgres { get; private set; } = null!;

    public ISpineClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Postgres = await TestPostgres.GetAsync();
        var connectionString = Postgres.RuntimeConnectionString;
        var builder = new InProcessTestClusterBuilder(2);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddSpine(connectionString, null, o =>
            {
                o.ResumeReminderPeriod = TimeSpan.FromSeconds(2);
                o.Audit.Key = TestAudit.Key;
                TestSpine.OnSharedDatabase(o);
                o.MaxPayloadBytes = MaxPayloadBytes;
                o.BreakerReportInterval = TimeSpan.FromMilliseconds(50);
                o.Retry.Model = new Spine.Recovery.RetryPolicy { MaxAttempts = 3, InitialDelay = TimeSpan.FromMilliseconds(100), Jitter = 0 };
                o.Timeouts.ChatClients[Timeouts.HangingChatClient.Key] = TimeSpan.FromMilliseconds(300);
            });
            silo.Services.Configure<Spine.Budgets.BudgetOptions>(o =>
            {
                o.ReservationTtl = TimeSpan.FromSeconds(3);

                // A token of the large model costs 0.001 in and 0.002 out; of the mini one, a tenth of that.
                o.Prices["metered"] = new Spine.Budgets.ModelPrice { InputPerMillion = 1000, OutputPerMillion = 2000 };
                o.Prices["metered-mini"] = new Spine.Budgets.ModelPrice { InputPerMillion = 100, OutputPerMillion = 200 };
                o.Prices["metered-silent"] = new Spine.Budgets.ModelPrice { InputPerMillion = 1000, OutputPerMillion = 2000, Encoding = "cl100k_base" };
                o.Workflows["test.budget-downgrade"] = new Spine.Budgets.WorkflowBudget { DowngradeAt = 0.5, DowngradeTo = Budgets.MeteredChatClient.Mini };
                o.Workflows["test.budget-pause"] = new Spine.Budgets.WorkflowBudget { OnExhausted = Spine.Budgets.BudgetExhaustedAction.Pause };
            });
            silo.AddIncomingGrainCallFilter<Budgets.SlowSettlementFilter>();
            silo.Services.AddSpineWorkflow<Budgets.BudgetWorkflow, Budgets.BudgetInput, string[]>("test.budget", 1);
            silo.Services.AddSpineWorkflow<Budgets.BudgetWorkflow, Budgets.BudgetInput, string[]>("test.budget-downgrade", 1);
            silo.Services.AddSpineWorkflow<Budgets.BudgetWorkflow, Budgets.BudgetInput, string[]>("test.budget-pause", 1);
            silo.Services.AddKeyedSingleton<IChatClient>(Budgets.MeteredChatClient.Large, new Budgets.MeteredChatClient("metered"));
            silo.Services.AddKeyedSingleton<IChatClient>(Budgets.MeteredChatClient.Mini, new Budgets.MeteredChatClient("metered-mini"));
            silo.Services.AddKeyedSingleton<IChatClient>(Budgets.MeteredChatClient.Silent, new Budgets.MeteredChatClient("metered-silent", reportUsage: false));
            silo.Services.AddSpineTool<Budgets.PricedTool>();
            silo.Services.AddSpineDemo(new ConfigurationBuilder().Build());
            silo.Services.AddSpineWorkflow<StepsWorkflow, StepsInput, int>();
            silo.Services.AddSpineWorkflow<FlipWorkflow, int, string>();
            silo.Services.AddSpineWorkflow<ValuesWorkflow, int, RecordedValues>();
            silo.Services.AddSpineWorkflow<ToolCallWorkflow, ToolCallInput, System.Text.Json.JsonElement>();
            silo.Services.AddSpineWorkflow<BigResultWorkflow, int, string>();
            silo.Services.AddSpineWorkflow<NamedStepWorkflow, string, int>();
            silo.Services.AddSpineWorkflow<ParallelWorkflow, string, string>();
            silo.Services.AddSpineWorkflow<ReorderWorkflow, int, string>();
            silo.Services.AddSpineWorkflow<TimeoutSagaWorkflow, int, string>();
            silo.Services.AddSpineWorkflow<Signals.SignalWorkflow, Signals.SignalInput, string[]>();
            silo.Services.AddSpineWorkflow<Approvals.SelfApprovalWorkflow, int, string>();
            silo.Services.AddSpineTool<SlowTool>();
            silo.Services.AddSingleton<Spine.Tools.ITool>(new DownTool("test_down", TimeSpan.FromHours(1)));
            silo.Services.AddSingleton<Spine.Tools.ITool>(new DownTool("test_down_briefly_waited", TimeSpan.FromSeconds(1)));
            silo.Services.AddSpineTool<EchoTool>();
            silo.Services.AddSpineTool<GateTool>();
            silo.Services.AddSpineTool<EffectTool>();
            silo.Services.AddSingleton<Readme.IPayments, Readme.FakePayments>();
            silo.Services.AddSpineWorkflow<Readme.RefundWorkflow, Readme.RefundRequest, Readme.RefundResult>();
            silo.Services.AddSpineTool<Readme.OrdersLookupTool>();
            silo.Services.AddSpineTool<BreakerTool>();
            silo.Services.AddSpineTool<RateLimits.MeteredTool>();
            silo.Services.AddSpineWorkflow<RateLimits.MeteredWorkflow, RateLimits.MeteredInput, int>();
            silo.Services.Configure<Spine.RateLimits.RateLimitOptions>(o =>
            {
                o.MaxInMemoryWait = TimeSpan.FromSeconds(1);
                o.Limits.Add(new Spine.RateLimits.RateLimitRule { Tool = RateLimits.MeteredTool.Name, Requests = RateLimits.MeteredTool.PerSecond });
                // A generous limit on the saga tool: compensations (of a cancelled run too) take permits like any call.
                o.Limits.Add(new Spine.RateLimits.RateLimitRule { Tool = "test_effect", Requests = 1000, Burst = 100 });
                o.Limits.Add(new Spine.RateLimits.RateLimitRule
                {
                    ChatClient = RateLimits.MeteredChatClient.Key,
                    TokensPerMinute = RateLimits.MeteredChatClient.TokensPerMinute,
                    TokenBurst = 2 * RateLimits.MeteredChatClient.MaxOutputTokens,
                });
            });
            silo.Services.AddKeyedSingleton<IChatClient>(RateLimits.MeteredChatClient.Key, new RateLimits.MeteredChatClient());
            silo.Services.AddSingleton<Spine.Tools.ITool>(new BreakerTool("test_breaker_a"));
            silo.Services.AddSingleton<Spine.Tools.ITool>(new BreakerTool("test_breaker_b"));
            silo.Services.AddSpineWorkflow<SagaWorkflow, SagaInput, string>();
            silo.Services.AddSpineWorkflow<ParameterWorkflow, int, string>();
            silo.Services.AddSpineWorkflow<EscalatingWorkflow, int, string>("test.escalating", 1, escalateToOperator: true);
            silo.Services.AddKeyedSingleton<IChatClient>("gatekeeper", new GatekeeperChatClient());
            silo.Services.AddKeyedSingleton<IChatClient>("rate-limited", new RateLimitedChatClient());
            silo.Services.AddKeyedSingleton<IChatClient>("misbehaving", new MisbehavingChatClient());
            silo.Services.AddKeyedSingleton<IChatClient>("adversary", new Policies.AdversaryChatClient());
            silo.Services.AddSpinePolicy(Policies.PolicyTests.AnalystRule());
            foreach (var rule in Approvals.ConfidentChatClient.Rules())
            {
                silo.Services.AddSpinePolicy(rule);
            }

            silo.Services.AddSpineWorkflow<Approvals.ToolApprovalWorkflow, string, string>();
            silo.Services.AddSpineWorkflow<Approvals.ToolApprovalPairWorkflow, string, string>();
            silo.Services.AddSpineWorkflow<Approvals.ApprovalBecomesToolWorkflow, string, string>();
            silo.Services.AddSpinePolicy(Approvals.ToolApprovalPairWorkflow.OneCallRule());
            silo.Services.AddSpineTool<Approvals.GuardedTool>();
            silo.Services.AddSpineTool<Policies.InjectingTool>();
            silo.Services.AddKeyedSingleton<IChatClient>("confident", new Approvals.ConfidentChatClient());
            foreach (var tool in Tools.VersionedTool.All())
            {
                silo.Services.AddSingleton(tool);
            }

            silo.Services.AddSpinePolicy(Tools.VersionedTool.CaretRule());
            silo.Services.AddSpineTool<Timeouts.HangTool>();
            silo.Services.AddSpineWorkflow<Timeouts.BookThenCallWorkflow, Timeouts.BookThenCall, string>();
            silo.Services.AddSpineWorkflow<Timeouts.StepTimeoutWorkflow, int, string>();
            silo.Services.AddSpineWorkflow<Slo.SloWorkflow, bool, string>();
            silo.Services.Configure<Spine.Slo.SloOptions>(o =>
            {
                o.Targets[Slo.SloWorkflow.Name] = Slo.SloTests.Target;
                o.Targets["test.slo-idle"] = 0.5;
            });
            silo.Services.AddKeyedSingleton<IChatClient>(Timeouts.HangingChatClient.Key, new Timeouts.HangingChatClient());
            silo.Services.AddKeyedSingleton<IChatClient>(Tools.VersionRecordingChatClient.Key, new Tools.VersionRecordingChatClient());
        });
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        Client = new SpineClient(Cluster.Client);
    }

    public async Task DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class ClusterCollection : ICollectionFixture<ClusterFixture>
{
    public const string Name = "cluster";
}
