using Microsoft.Extensions.Logging;
using Spine.Errors;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;
using Spine.Tools;

namespace Spine.Budgets;

/// <summary>What a <see cref="JournalKind.BudgetReserved"/> row records.</summary>
/// <param name="Account">The account whose budget holds it (null: the run's own ceilings only).</param>
/// <param name="Tokens">The tokens reserved (input counted, plus the maximum output).</param>
/// <param name="Cost">The cost reserved.</param>
/// <param name="InputTokens">The input tokens counted before the call.</param>
/// <param name="ChatClient">A model call: the chat client it goes to (a downgrade's cheaper one).</param>
/// <param name="DowngradedFrom">A model call sent to a cheaper client instead of this one.</param>
/// <param name="UsedFraction">The largest fraction of a ceiling (account's or run's) used, this reservation included.</param>
/// <param name="Warning">Why the reservation warns (a threshold passed), if it does.</param>
internal sealed record BudgetReservedPayload(string? Account, long Tokens, decimal Cost, long InputTokens, string? ChatClient, string? DowngradedFrom, double UsedFraction, string? Warning);

/// <summary>What a <see cref="JournalKind.BudgetSettled"/> row records: what the call used (nothing, when it failed).</summary>
internal sealed record BudgetSettledPayload(string? Account, long Tokens, decimal Cost, long InputTokens, long OutputTokens);

/// <summary>What a <see cref="JournalKind.BudgetRefused"/> row records: whose ceiling and why.</summary>
internal sealed record BudgetRefusedPayload(string? Account, string Scope, string Reason, long Tokens, decimal Cost);

/// <summary>
/// What a call holds in its account's budget while it runs: what the budget-renewal attempt stage asks for again
/// when an attempt begins long after the reservation was last taken.
/// </summary>
internal sealed class BudgetHold(string account, BudgetReservation reservation, DateTimeOffset renewedAt)
{
    public string Account { get; } = account;

    public BudgetReservation Reservation { get; } = reservation;

    public DateTimeOffset RenewedAt { get; set; } = renewedAt;
}

/// <summary>What a <see cref="JournalKind.BudgetPaused"/> row records: until when the run waits, and why.</summary>
internal sealed record BudgetPausedPayload(string Account, DateTimeOffset Until, string Reason);

/// <summary>
/// Call stage of the control plane, after the policy: a model call (or a tool that declares a cost per call)
/// reserves its worst case in its run's ceilings and its account's <see cref="IBudgetGrain"/> before any attempt,
/// keyed by (run, step), and settles what it used once its outcome is durable. A priced tool's reservation is
/// journaled before the call, a model call's with the call's first row; the settlement in one commit with the
/// outcome, sent to the grain without waiting (see docs/budgets.md). A call that does not fit degrades as its
/// workflow type says (<see cref="WorkflowBudget"/>): a cheaper chat client, a pause until the daily window
/// resets, or <c>budget_exhausted</c>.
/// </summary>
internal sealed partial class BudgetStage(CallCosts costs, Policies.PolicyEngine policies, ToolRegistry tools, BudgetCalls budgets, BudgetLedger ledgers, ILogger<BudgetStage> logger) : IStepStage
{
    public int Order => StepStageOrder.Budget;

    public async Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next)
    {
        var ledger = ledgers.For(run);
        try
        {
            return await InvokeAsync(call, run, next, ledger);
        }
        finally
        {
            // In the journal now (or refused, or the activation ends): the journal speaks for it from here on.
            ledger.Deciding.Remove(call.Step);
        }
    }

    private async Task<StepOutcome> InvokeAsync(StepCall call, IStepRun run, StepHandler next, RunLedger ledger)
    {
        var reserved = run.EventsOf(call.Step).LastOrDefault(e => e.Kind == JournalKind.BudgetReserved);
        BudgetReservedPayload reservation;
        if (reserved is not null)
        {
            // Reserved before this execution (which stopped before the outcome): the journal's decision stands. The
            // grain is told again under the same key, which keeps the reservation, or takes it back once expired
            // (even past a ceiling: the call runs either way, and its settlement must count).
            reservation = RunPayloads.Read<BudgetReservedPayload>(reserved.Payload);
            if (reservation.Account is { } held)
            {
                var sent = ledger.TakeUnconfirmed();
                await budgets.CallAsync(held, b => b.ReserveAsync(new BudgetReservation(run.RunId, call.Step, reservation.Tokens, reservation.Cost) { Force = true, Settlements = sent }), run.Stopping);
                ledger.Confirm(sent);
            }
        }
        else if (Plan(call, run) is not { } plan)
        {
            return await next(call, run);
        }
        else
        {
            var decided = await ReserveAsync(call, run, plan, ledger);
            if (decided.Refused is { } refused)
            {
                return refused;
            }

            reservation = decided.Reservation!;
        }

        var effective = call;
        if (reservation.DowngradedFrom is not null && call.Model is { } model)
        {
            effective = call with { ChatClient = reservation.ChatClient, Model = model with { Options = costs.DowngradedOptions(model.Options, run.WorkflowType) } };
        }

        var hold = reservation.Account is { } account
            ? new BudgetHold(account, new BudgetReservation(run.RunId, call.Step, reservation.Tokens, reservation.Cost) { Force = true }, run.Time.GetUtcNow())
            : null;
        var counted = reservation.InputTokens;
        var outcome = await next(effective with { Budget = hold, WithOutcome = Chain(call.WithOutcome, o => [Settlement(effective, reservation, counted, o)]) }, run);

        // The settlement is durable with the outcome (or, for an outcome an operator decided, now). Only then is the
        // grain told: a crash in between leaves the journaled settlement, which the run sends again (BudgetRunHook).
        var settled = run.EventsOf(call.Step).LastOrDefault(e => e.Kind == JournalKind.BudgetSettled);
        if (settled is null)
        {
            settled = (await run.AppendAsync([Settlement(effective, reservation, counted, outcome)]))[0];
        }

        if (hold is not null)
        {
            // Not waited for: the run's next reservation carries it too, so that the grain has counted it (whichever
            // message arrives first) before it weighs the next call; the run's end sends it once more.
            var spent = RunPayloads.Read<BudgetSettledPayload>(settled.Payload);
            var settlement = new BudgetSettlement(run.RunId, call.Step, spent.Tokens, spent.Cost);
            ledger.Unconfirmed[call.Step] = settlement;
            _ = SettleAsync(run, ledger, hold.Account, settlement);
        }

        return outcome;
    }

    private async Task SettleAsync(IStepRun run, RunLedger ledger, string account, BudgetSettlement settlement)
    {
        try
        {
            await budgets.CallAsync(account, b => b.SettleAsync(settlement.RunId, settlement.Step, settlement.Tokens, settlement.Cost), run.Stopping);
            ledger.Confirm([settlement]);
        }
        catch (OperationCanceledException)
        {
            // The activation ended: the next one sends the journal's settlements as it begins.
        }
        catch (Exception e)
        {
            // Sent again with the run's next reservation, and when the run ends (or resumes).
            LogSettleFailed(logger, e, run.RunId, settlement.Step, account);
        }
    }

    /// <summary>Rows before an outcome: those of the stage outside, then this one's.</summary>
    private static Func<StepOutcome, IReadOnlyList<PendingRow>> Chain(Func<StepOutcome, IReadOnlyList<PendingRow>>? outer, Func<StepOutcome, IReadOnlyList<PendingRow>> own) =>
        outer is null ? own : o => [.. outer(o), .. own(o)];

    /// <summary>
    /// What the call used: a model's reported (or counted) usage, a tool's cost per call when it succeeded; nothing for
    /// a failure, or for an outcome an operator decided (a skipped step made no call).
    /// </summary>
    private PendingRow Settlement(StepCall call, BudgetReservedPayload reservation, long countedInput, StepOutcome outcome)
    {
        var spent = !outcome.Ok || !outcome.Executed || outcome.Payload is null ? default
            : call.Kind == JournalKind.Model ? costs.Used(outcome.Payload, countedInput, reservation.ChatClient, call.Model?.Options)
            : new Spend(0, reservation.Cost);
        return new PendingRow(JournalKind.BudgetSettled, call.Step, call.Name, true,
            RunPayloads.Write(new BudgetSettledPayload(reservation.Account, spent.Tokens, spent.Cost, spent.InputTokens, spent.OutputTokens)), null);
    }

    /// <summary>What a call would reserve: its worst case, and a cheaper client's; null when no budget applies to it.</summary>
    private CallPlan? Plan(StepCall call, IStepRun run)
    {
        var settings = costs.Options.For(run.WorkflowType);
        var runCeiling = run.Budget ?? (settings.RunMaxTokens is null && settings.RunMaxCost is null ? null
            : new RunBudget { MaxTokens = settings.RunMaxTokens, MaxCost = settings.RunMaxCost });
        if (run.AccountId is null && runCeiling is null)
        {
            return null;
        }

        switch (call.Kind)
        {
            case JournalKind.Model when call.Model is { } model:
            {
                var worst = costs.WorstCase(model.Messages, model.Options, call.ChatClient);
                Spend? cheaper = null;
                if (settings.DowngradeTo is { } client && client != call.ChatClient
                    && policies.CheckModel(run.WorkflowType, run.StartedBy, client) is null)
                {
                    cheaper = costs.WorstCase(model.Messages, costs.DowngradedOptions(model.Options, run.WorkflowType), client);
                }

                return new CallPlan(worst, cheaper, settings, runCeiling);
            }

            case JournalKind.Tool when call.Tool is { } tool && CostOf(tool) is > 0 and var cost:
                return new CallPlan(new Spend(0, cost), null, settings, runCeiling);

            default:
                return null;
        }
    }

    /// <summary>The cost per call of the version the call resolves to (the run's pinned one, else the newest).</summary>
    private decimal? CostOf(ToolCall tool) => CostOf(tools, tool);

    /// <summary>The cost per call of the version <paramref name="tool"/> resolves to in <paramref name="registry"/>; null for an unknown tool.</summary>
    internal static decimal? CostOf(ToolRegistry registry, ToolCall tool)
    {
        try
        {
            return registry.Resolve(tool.Name, tool.Version()).Definition.CostPerCall;
        }
        catch (UnknownToolException)
        {
            // The contract stage refuses it, with the registered names: it reaches nothing, and costs nothing.
            return null;
        }
    }

    private async Task<(BudgetReservedPayload? Reservation, StepOutcome? Refused)> ReserveAsync(StepCall call, IStepRun run, CallPlan plan, RunLedger ledger)
    {
        var settings = plan.Settings;
        var deciding = ledger.Deciding;
        {
            while (true)
            {
                run.ThrowIfCancelRequested();

                // The run's own ceilings first, from its journal and its calls deciding now: what it settled, and what it
                // holds in calls in flight. Checked and taken in one turn, before any await.
                var runUse = RunUse(run, call.Step, deciding);
                var runFraction = Fraction(runUse, plan.RunCeiling);
                var primaryFits = Fits(runUse + plan.Worst, plan.RunCeiling);
                var cheaperFits = plan.Cheaper is { } c && Fits(runUse + c, plan.RunCeiling);
                var downgradeAt = settings.DowngradeAt ?? 1.0;
                var useCheaper = plan.Cheaper is not null && cheaperFits && (!primaryFits || runFraction >= downgradeAt);
                if (!primaryFits && !useCheaper)
                {
                    var reason = RunRefusal(runUse, plan.Worst, plan.RunCeiling!);
                    return (null, await RefuseAsync(call, run, null, "run", reason, plan.Worst));
                }

                var chosen = useCheaper ? plan.Cheaper!.Value : plan.Worst;
                deciding[call.Step] = chosen;
                var fraction = Fraction(runUse + chosen, plan.RunCeiling);
                var account = run.AccountId;
                if (account is not null)
                {
                    // The fallback is offered only when it fits the run's own ceilings too.
                    var sent = ledger.TakeUnconfirmed();
                    var reservation = new BudgetReservation(run.RunId, call.Step, chosen.Tokens, chosen.Cost,
                        useCheaper || !cheaperFits || plan.Cheaper is not { } fallback ? null : new BudgetFallback(fallback.Tokens, fallback.Cost, downgradeAt))
                    {
                        Settlements = sent,
                    };

                        var verdict = await budgets.CallAsync(account, b => b.ReserveAsync(reservation), run.Stopping);
                    ledger.Confirm(sent);
                    if (!verdict.Granted)
                    {
                        deciding.Remove(call.Step);
                        var reason = verdict.Reason ?? "the account's budget has no room";
                        if (settings.OnExhausted == BudgetExhaustedAction.Pause && (verdict.DailyOnly || verdict.RoomAt is not null))
                        {
                            await PauseAsync(call, run, account, verdict.RoomAt ?? verdict.WindowEnds, reason);
                            continue;
                        }

                        return (null, await RefuseAsync(call, run, account, "account", reason, chosen));
                    }

                    if (verdict.Fallback)
                    {
                        useCheaper = true;
                        chosen = plan.Cheaper!.Value;
                        deciding[call.Step] = chosen;
                    }

                    fraction = Math.Max(Fraction(runUse + chosen, plan.RunCeiling), verdict.UsedFraction);
                }

                string? warning = null;
                if (settings.WarnAt is { } warnAt && fraction >= warnAt)
                {
                    warning = $"{fraction:P0} of a budget ceiling is used (warns from {warnAt:P0})";
                    LogWarning(logger, run.RunId, call.Step, account, fraction);
                }

                var payload = new BudgetReservedPayload(account, chosen.Tokens, chosen.Cost, chosen.InputTokens,
                    call.Kind == JournalKind.Model ? (useCheaper ? settings.DowngradeTo : call.ChatClient) : null,
                    useCheaper ? call.ChatClient ?? "default" : null, fraction, warning);
                var row = new PendingRow(JournalKind.BudgetReserved, call.Step, call.Name, true, RunPayloads.Write(payload), null);
                if (call.Kind == JournalKind.Model)
                {
                    // A model call's reservation is journaled with the call's first row, not in a commit before it:
                    // until then the grain holds it by (run, step), so a call this activation never journals is
                    // reserved again under the same key when the run re-executes it (or expires), and a model call
                    // has no effect that its journal would have to account for.
                    run.JournalWithNextRow(row);
                }
                else
                {
                    // A tool's effect may happen before its outcome is journaled: the reservation that let it run is
                    // durable first, so that the run, resuming, re-executes it under that reservation.
                    await run.AppendAsync([row]);
                }

                return (payload, null);
            }
        }
    }

    /// <summary>
    /// Waits, durably, until the account's window resets (or, when only other calls' reservations stand in the way,
    /// until they may have settled); a pause journaled before this execution keeps its time. At least a second, so
    /// that a clock behind the budget grain's does not spin.
    /// </summary>
    private static async Task PauseAsync(StepCall call, IStepRun run, string account, DateTimeOffset until, string reason)
    {
        var earliest = run.Time.GetUtcNow() + MinimumPause;
        until = until < earliest ? earliest : until;
        var paused = run.EventsOf(call.Step).LastOrDefault(e => e.Kind == JournalKind.BudgetPaused);
        var journaledUntil = paused is null ? (DateTimeOffset?)null : RunPayloads.Read<BudgetPausedPayload>(paused.Payload).Until;
        if (journaledUntil is not { } due || due < until)
        {
            await run.AppendAsync(JournalKind.BudgetPaused, call.Step, call.Name, true, RunPayloads.Write(new BudgetPausedPayload(account, until, reason)));
            due = until;
        }

        await run.WaitUntilAsync(due, Waits.WaitKind.Budget);
    }

    private static async Task<StepOutcome> RefuseAsync(StepCall call, IStepRun run, string? account, string scope, string reason, Spend asked)
    {
        var error = new ErrorPayload(BudgetRefusals.Kind, $"'{call.Name}' does not fit the {scope}'s budget: {reason}",
            typeof(BudgetExhaustedException).FullName, ErrorClass.BudgetExhausted.Name(), Step: call.Step, StepName: call.Name, StepKind: call.Kind.ToString(),
            ArgumentsHash: call.ArgumentsHash);
        var rows = await run.AppendAsync(
        [
            new PendingRow(JournalKind.BudgetRefused, call.Step, call.Name, false, RunPayloads.Write(new BudgetRefusedPayload(account, scope, reason, asked.Tokens, asked.Cost)), null),
            new PendingRow(call.Kind, call.Step, call.Name, false, RunPayloads.Write(error), call.Attempt),
        ]);
        return StepOutcome.FromJournal(rows[^1]);
    }

    /// <summary>The shortest budget pause.</summary>
    private static readonly TimeSpan MinimumPause = TimeSpan.FromSeconds(1);

    /// <summary>
    /// What the run has used and holds: every settlement, every reservation not yet settled, and every reservation its
    /// parallel calls are deciding now (other than this step's).
    /// </summary>
    private static Spend RunUse(IStepRun run, int step, Dictionary<int, Spend> deciding)
    {
        var settled = new HashSet<int>();
        var use = default(Spend);
        foreach (var row in run.Events(JournalKind.BudgetSettled))
        {
            var spent = RunPayloads.Read<BudgetSettledPayload>(row.Payload);
            use += new Spend(spent.Tokens, spent.Cost);
            settled.Add(row.Step!.Value);
        }

        var journaled = new HashSet<int>(settled);
        foreach (var row in run.Events(JournalKind.BudgetReserved))
        {
            journaled.Add(row.Step!.Value);
            if (row.Step != step && !settled.Contains(row.Step!.Value))
            {
                var held = RunPayloads.Read<BudgetReservedPayload>(row.Payload);
                use += new Spend(held.Tokens, held.Cost);
            }
        }

        foreach (var (other, held) in deciding)
        {
            if (other != step && !journaled.Contains(other))
            {
                use += held;
            }
        }

        return use;
    }

    private static bool Fits(Spend use, RunBudget? ceiling) =>
        ceiling is null || ((ceiling.MaxTokens is not { } tokens || use.Tokens <= tokens) && (ceiling.MaxCost is not { } cost || use.Cost <= cost));

    private static double Fraction(Spend use, RunBudget? ceiling)
    {
        var max = 0.0;
        if (ceiling?.MaxTokens is { } tokens)
        {
            max = Math.Max(max, tokens == 0 ? (use.Tokens > 0 ? double.PositiveInfinity : 1) : (double)use.Tokens / tokens);
        }

        if (ceiling?.MaxCost is { } cost)
        {
            max = Math.Max(max, cost == 0 ? (use.Cost > 0 ? double.PositiveInfinity : 1) : (double)(use.Cost / cost));
        }

        return max;
    }

    private static string RunRefusal(Spend use, Spend asked, RunBudget ceiling) =>
        ceiling.MaxTokens is { } tokens && use.Tokens + asked.Tokens > tokens
            ? $"the run's token ceiling ({tokens}) would be passed: {use.Tokens} used or held, {asked.Tokens} asked"
            : $"the run's cost ceiling ({ceiling.MaxCost}) would be passed: {use.Cost} used or held, {asked.Cost} asked";

    private sealed record CallPlan(Spend Worst, Spend? Cheaper, WorkflowBudget Settings, RunBudget? RunCeiling);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId}, step {Step}: the settlement could not be sent to account {Account}'s budget; it is sent again when the run ends")]
    private static partial void LogSettleFailed(ILogger logger, Exception exception, string runId, int step, string account);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {RunId}, step {Step}: {Fraction:P0} of a budget ceiling is used (account {Account})")]
    private static partial void LogWarning(ILogger logger, string runId, int step, string? account, double fraction);
}

/// <summary>Reading budget refusals back from a journal.</summary>
internal static class BudgetRefusals
{
    /// <summary>The error kind of a refused step's outcome.</summary>
    public const string Kind = "budget_exhausted";
}
