using System.Text.Json;
using Spine.Budgets;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Budgets;

/// <summary>
/// The budget stage on a real two-silo cluster: model and priced tool calls reserve their worst case in the run's and
/// the account's budgets before they are made, settle what they used after, and degrade as their workflow type says.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class BudgetStageTests(ClusterFixture fixture)
{
    /// <summary>What the metered clients report per call: 10 input and 20 output tokens.</summary>
    private const long UsedPerCall = 30;

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string NewAccount() => "acct-" + Guid.NewGuid().ToString("N");

    [Fact]
    public async Task AModelCall_ReservesItsCountedWorstCase_AndSettlesWhatItUsed_InOneCommitWithItsOutcome()
    {
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { TotalTokens = 100_000, TotalCost = 100 });

        var run = await RunAsync("test.budget", new BudgetInput(2), account);
        var budget = await fixture.Client.GetBudgetAsync(account);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);

        Assert.Equal(RunStatus.Completed, run.Status);
        Assert.Equal((2 * UsedPerCall, 0, 0L), (budget.SpentTokensTotal, budget.Reservations, budget.ReservedTokens));

        // 10 input tokens at 0.001 and 20 output tokens at 0.002, twice.
        Assert.Equal(0.1m, budget.SpentCostTotal);
        foreach (var step in new[] { 1, 2 })
        {
            var rows = journal.Where(r => r.Step == step).ToList();
            Assert.Equal(["BudgetReserved", "BudgetSettled", "Model"], rows.Select(r => r.Kind));
            var reserved = Read<BudgetReservedPayload>(rows[0]);

            // The input is counted with a real tokenizer (a short question and its framing), plus the call's 50 output tokens.
            Assert.InRange(reserved.InputTokens, 8, 40);
            Assert.Equal(reserved.InputTokens + 50, reserved.Tokens);
            Assert.Equal((reserved.InputTokens * 0.001m) + (50 * 0.002m), reserved.Cost);
            Assert.Equal(account, reserved.Account);
            Assert.Equal(new BudgetSettledPayload(account, UsedPerCall, 0.05m, 10, 20), Read<BudgetSettledPayload>(rows[1]));
            Assert.Equal(rows[1].Seq + 1, rows[2].Seq);
        }
    }

    [Fact]
    public async Task ARunThatStopsExecuting_HasItsSettlementsCounted_BeforeItShowsAsWaiting()
    {
        // Single settlements to this account arrive late: a run waiting (which the recovery sweep does not resume after a
        // crash) must not owe one to the grain meanwhile.
        var account = SlowSettlementFilter.Prefix + Guid.NewGuid().ToString("N");
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { TotalTokens = 100_000 });

        var run = await fixture.Client.StartAsync("test.budget", new BudgetInput(2, WaitForGo: true), accountId: account);
        var waiting = await fixture.Client.WaitForStatusAsync(run.RunId, RunStatus.AwaitingSignal, Timeout);
        var budget = await fixture.Client.GetBudgetAsync(account);
        await fixture.Client.SignalAsync(run.RunId, "go", "go");
        var done = await fixture.Client.WaitAsync(run.RunId, Timeout);

        Assert.Equal(RunStatus.AwaitingSignal, waiting.Status);
        Assert.Equal((2 * UsedPerCall, 0), (budget.SpentTokensTotal, budget.Reservations));
        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal(2 * UsedPerCall, (await fixture.Client.GetBudgetAsync(account)).SpentTokensTotal);
    }

    [Fact]
    public async Task ARunsEnd_ReleasesAReservationItsJournalNeverRecorded()
    {
        // What an earlier activation leaves when its silo dies during a model call: the grain holds the call's
        // reservation, and the journal (which records it with the call's outcome) has nothing of it.
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { TotalTokens = 100_000 });
        var run = await fixture.Client.StartAsync("test.budget", new BudgetInput(0, WaitForGo: true), accountId: account);
        await fixture.Client.WaitForStatusAsync(run.RunId, RunStatus.AwaitingSignal, Timeout);
        var held = await fixture.Cluster.Client.GetGrain<IBudgetGrain>(account).ReserveAsync(new BudgetReservation(run.RunId, 7, 500, 0));

        await fixture.Client.SignalAsync(run.RunId, "go", "go");
        var done = await fixture.Client.WaitAsync(run.RunId, Timeout);
        var budget = await fixture.Client.GetBudgetAsync(account);

        Assert.True(held.Granted);
        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal((0, 0L, 0L), (budget.Reservations, budget.ReservedTokens, budget.SpentTokensTotal));
    }

    [Fact]
    public async Task AModelThatReportsNoUsage_IsSettledByCountingItsAnswer()
    {
        var run = await RunAsync("test.budget", new BudgetInput(1, MeteredChatClient.Silent), NewAccount());
        var settled = Read<BudgetSettledPayload>((await fixture.Client.GetJournalAsync(run.RunId)).Single(r => r.Kind == "BudgetSettled"));
        var reserved = Read<BudgetReservedPayload>((await fixture.Client.GetJournalAsync(run.RunId)).Single(r => r.Kind == "BudgetReserved"));

        Assert.Equal(RunStatus.Completed, run.Status);
        Assert.Equal(reserved.InputTokens, settled.InputTokens);

        // "metered-silent answers", counted with cl100k_base.
        Assert.InRange(settled.OutputTokens, 3, 8);
        Assert.Equal(settled.InputTokens + settled.OutputTokens, settled.Tokens);
    }

    [Fact]
    public async Task ACallOverTheAccountsCeiling_IsNeverMade_TheRefusalIsJournaled_AndTheRunFailsWithBudgetExhausted()
    {
        var worst = await WorstCaseAsync();
        var account = NewAccount();

        // Room for two calls' worst case on top of what the first two use, not for a third.
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { TotalTokens = worst + UsedPerCall + 5 });

        var run = await RunAsync("test.budget", new BudgetInput(3), account);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        var budget = await fixture.Client.GetBudgetAsync(account);

        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Equal(("budget_exhausted", 3), (run.Error!.Kind, run.Error.Step));
        Assert.Contains("the account's budget", run.Error.Message, StringComparison.Ordinal);
        Assert.Equal(2, MeteredChatClient.Calls(run.RunId));
        Assert.Equal(["BudgetRefused", "Model"], journal.Where(r => r.Step == 3).Select(r => r.Kind));
        var refused = Read<BudgetRefusedPayload>(journal.Single(r => r.Kind == "BudgetRefused"));
        Assert.Equal(("account", account), (refused.Scope, refused.Account));
        Assert.Contains($"total token ceiling ({worst + UsedPerCall + 5})", refused.Reason, StringComparison.Ordinal);
        Assert.Equal((2 * UsedPerCall, 0), (budget.SpentTokensTotal, budget.Reservations));
    }

    [Fact]
    public async Task ARunsOwnCeiling_RefusesTheCallThatWouldPassIt_AndTheWorkflowCatchesTheTypedError()
    {
        var worst = await WorstCaseAsync();
        var run = await RunAsync("test.budget", new BudgetInput(5, CatchExhausted: true), account: null, new RunBudget { MaxTokens = worst + UsedPerCall + 5 });
        var answers = JsonSerializer.Deserialize<string[]>(run.ResultJson!)!;

        Assert.Equal(RunStatus.Completed, run.Status);
        Assert.Equal(["metered answers", "metered answers", "exhausted:run:3"], answers);
        Assert.Equal(2, MeteredChatClient.Calls(run.RunId));
        var refused = Read<BudgetRefusedPayload>((await fixture.Client.GetJournalAsync(run.RunId)).Single(r => r.Kind == "BudgetRefused"));
        Assert.Equal(("run", (string?)null), (refused.Scope, refused.Account));
        Assert.Contains("the run's token ceiling", refused.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ParallelCallsOfOneRun_DecideOneAfterAnother_SoThatTheRunsCeilingHolds()
    {
        var worst = await WorstCaseAsync();

        // Room for two calls' worst case, not three; five ask at once.
        var run = await RunAsync("test.budget", new BudgetInput(5, Parallel: true), account: null, new RunBudget { MaxTokens = (2 * worst) + 5 });
        var answers = JsonSerializer.Deserialize<string[]>(run.ResultJson!)!;
        var journal = await fixture.Client.GetJournalAsync(run.RunId);

        Assert.Equal(RunStatus.Completed, run.Status);
        Assert.Equal(2, answers.Count(a => a == "metered answers"));
        Assert.Equal(3, answers.Count(a => a.StartsWith("exhausted:run:", StringComparison.Ordinal)));
        Assert.Equal(2, MeteredChatClient.Calls(run.RunId));
        Assert.Equal(3, journal.Count(r => r.Kind == "BudgetRefused"));
    }

    [Fact]
    public async Task PastItsDowngradeThreshold_AWorkflowsModelCalls_GoToTheCheaperClient_AndAreJournaledSo()
    {
        var worst = await WorstCaseAsync();
        var account = NewAccount();

        // Half the ceiling is used after a few calls: from then on the mini model answers.
        var ceiling = 4 * worst;
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { TotalTokens = ceiling });
        var calls = (int)(ceiling / 2 / UsedPerCall) + 3;

        var run = await RunAsync("test.budget-downgrade", new BudgetInput(calls), account);
        var answers = JsonSerializer.Deserialize<string[]>(run.ResultJson!)!;
        var reservations = (await fixture.Client.GetJournalAsync(run.RunId)).Where(r => r.Kind == "BudgetReserved").Select(Read<BudgetReservedPayload>).ToList();

        Assert.Equal(RunStatus.Completed, run.Status);
        var firstCheap = Array.IndexOf(answers, "metered-mini answers");
        Assert.True(firstCheap > 0, string.Join(", ", answers));
        Assert.All(answers[..firstCheap], a => Assert.Equal("metered answers", a));
        Assert.All(answers[firstCheap..], a => Assert.Equal("metered-mini answers", a));
        Assert.All(reservations[firstCheap..], r => Assert.Equal((MeteredChatClient.Mini, "metered"), (r.ChatClient, r.DowngradedFrom)));
        Assert.All(reservations[..firstCheap], r => Assert.Null(r.DowngradedFrom));

        // The switch came once half of the ceiling was used.
        Assert.True(firstCheap * UsedPerCall >= ceiling / 2, $"switched after {firstCheap} calls of {UsedPerCall} tokens under a ceiling of {ceiling}");
        Assert.True((firstCheap - 1) * UsedPerCall < ceiling / 2, $"switched only after {firstCheap} calls of {UsedPerCall} tokens under a ceiling of {ceiling}");
    }

    [Fact]
    public async Task APricedTool_ReservesAndIsChargedItsCostPerCall_UntilTheAccountHasNoRoom()
    {
        var account = NewAccount();
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { TotalCost = 0.6m });

        var run = await RunAsync("test.budget", new BudgetInput(3, ToolOnly: true), account);
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        var budget = await fixture.Client.GetBudgetAsync(account);

        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Equal(("budget_exhausted", 3, PricedTool.Name), (run.Error!.Kind, run.Error.Step, run.Error.StepName));
        Assert.Equal((0.5m, 0L, 0), (budget.SpentCostTotal, budget.SpentTokensTotal, budget.Reservations));
        Assert.Equal(2, journal.Count(r => r.Kind == "Tool" && r.Outcome == "ok"));
    }

    [Fact]
    public async Task WhenOnlyTheDailyWindowIsSpent_APausingWorkflow_WaitsInAwaitingBudget_AndGoesOnWhenTheWindowResets()
    {
        var worst = await WorstCaseAsync();
        var account = NewAccount();
        var window = TimeSpan.FromSeconds(20);
        await fixture.Client.SetBudgetAsync(account, new BudgetCeilings { DailyTokens = worst + UsedPerCall + 5, Window = window });

        // Start early in a window, so that the third call is refused well before it ends.
        var now = DateTimeOffset.UtcNow;
        var midnight = new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        var windowEnds = midnight + (window * (Math.Floor((now - midnight) / window) + 1));
        if (windowEnds - now < TimeSpan.FromSeconds(14))
        {
            await Task.Delay(windowEnds - now + TimeSpan.FromMilliseconds(200));
            windowEnds += window;
        }

        var started = await fixture.Client.StartAsync(new StartRunRequest("test.budget-pause", JsonSerializer.Serialize(new BudgetInput(3), Json), AccountId: account));
        var paused = await Eventually.GetAsync(() => fixture.Client.GetAsync(started.RunId), r => r.Status == RunStatus.AwaitingBudget, TimeSpan.FromSeconds(10), "the run to pause for its budget");
        var pauseRow = (await fixture.Client.GetJournalAsync(started.RunId)).Single(r => r.Kind == "BudgetPaused");
        var run = await fixture.Client.WaitAsync(started.RunId, Timeout);

        Assert.Equal(RunStatus.AwaitingBudget, paused.Status);
        Assert.Equal(windowEnds, Read<BudgetPausedPayload>(pauseRow).Until);
        Assert.Equal(RunStatus.Completed, run.Status);
        Assert.True(run.UpdatedAt >= windowEnds, $"finished at {run.UpdatedAt:O}, before the window ended at {windowEnds:O}");
        Assert.Equal(3, MeteredChatClient.Calls(run.RunId));
    }

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>The worst case the budget stage reserves for one call of <see cref="BudgetWorkflow"/> (the same question each time).</summary>
    private async Task<long> WorstCaseAsync()
    {
        var probe = await RunAsync("test.budget", new BudgetInput(1), account: null, new RunBudget { MaxTokens = 1_000_000 });
        return Read<BudgetReservedPayload>((await fixture.Client.GetJournalAsync(probe.RunId)).Single(r => r.Kind == "BudgetReserved")).Tokens;
    }

    private async Task<RunInfo> RunAsync(string workflowType, BudgetInput input, string? account, RunBudget? budget = null)
    {
        var started = await fixture.Client.StartAsync(new StartRunRequest(workflowType, JsonSerializer.Serialize(input, Json), AccountId: account, Budget: budget));
        return await fixture.Client.WaitAsync(started.RunId, Timeout);
    }

    private static T Read<T>(JournalEntryView row) => JsonSerializer.Deserialize<T>(row.PayloadJson!, Json)!;
}
