using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Spine.Budgets;
using Spine.Errors;
using Spine.Escalation;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Policies;
using Spine.Recovery;
using Spine.Replay;
using Spine.Runs;
using Spine.Tests.Pipeline;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Tests.Budgets;

/// <summary>The budget stage against an in-memory run with its own ceilings (no account, so no grain is asked).</summary>
public sealed class BudgetPipelineTests
{
    private readonly FakeStepRun _run = new() { Budget = new RunBudget { MaxTokens = 1_000_000 } };

    [Fact]
    public async Task AModelStep_AnOperatorSkipped_SettlesNothing_AndItsOutcomeReachesTheWorkflow()
    {
        _run.Decide = (run, step) =>
        {
            run.Decided(step, "model", OperatorAction.Skip, JournalKind.Model, outcomeOk: true);
            return OperatorAction.Skip;
        };

        var outcome = await Pipeline().RunAsync(ModelCall(_ => throw new TransientException("the provider is down")), _run);

        Assert.True(outcome.Ok);
        Assert.False(outcome.Executed);
        var kinds = _run.History.Rows.Select(r => r.Kind).ToList();
        Assert.Equal([JournalKind.BudgetReserved, JournalKind.Escalated, JournalKind.OperatorDecided, JournalKind.Model, JournalKind.BudgetSettled], kinds);
        var settled = RunPayloads.Read<BudgetSettledPayload>(_run.Rows(JournalKind.BudgetSettled).Single().Payload);
        Assert.Equal((0L, 0m), (settled.Tokens, settled.Cost));
    }

    [Fact]
    public async Task AFailedModelCall_SettlesNothing_InTheCommitOfItsOutcome()
    {
        var outcome = await Pipeline().RunAsync(ModelCall(_ => throw new TerminalException("the provider refused")), _run);

        Assert.False(outcome.Ok);
        Assert.Equal([JournalKind.BudgetReserved, JournalKind.BudgetSettled, JournalKind.Model], _run.History.Rows.Select(r => r.Kind));
        Assert.Equal(0L, RunPayloads.Read<BudgetSettledPayload>(_run.Rows(JournalKind.BudgetSettled).Single().Payload).Tokens);
    }

    private StepPipeline Pipeline()
    {
        var services = new ServiceCollection().BuildServiceProvider();
        var costs = new CallCosts(Options.Create(new BudgetOptions()), services);
        var tools = new ToolRegistry([]);
        var policies = new PolicyEngine(Options.Create(new PolicyOptions()), tools, new WorkflowRegistry([]));
        var budgets = new BudgetCalls(null!, _run.Clock, NullLogger<BudgetCalls>.Instance);
        return new StepPipeline(
            [new ReplayStage(), new BudgetStage(costs, policies, tools, budgets, new BudgetLedger(), NullLogger<BudgetStage>.Instance), new JournalStage(), new EscalationStage(), new RetryStage(() => 0.5)],
            []);
    }

    private static StepCall ModelCall(Func<StepAttempt, Task<string>> execute) => new()
    {
        Kind = JournalKind.Model,
        Step = 1,
        Name = "model",
        Retry = new RetryPolicy { MaxAttempts = 1 },
        Replay = ReplayOrder.None,
        EscalateToOperator = true,
        Model = new ModelRequest([new ChatMessage(ChatRole.User, "What is 2+3?")], new ChatOptions { MaxOutputTokens = 10 }),
        Execute = execute,
    };
}
