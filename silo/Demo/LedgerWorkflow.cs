using Spine.Storage;
using Spine.Workflows;

namespace Spine.Silo.Demo;

/// <summary>The input of <see cref="LedgerWorkflow"/>.</summary>
/// <param name="Steps">How many side-effecting steps.</param>
/// <param name="StepMilliseconds">How long each step works before applying its effect.</param>
/// <param name="PauseSeconds">A durable timer after the first half of the steps; 0 for none.</param>
public sealed record LedgerInput(int Steps = 5, int StepMilliseconds = 200, int PauseSeconds = 0);

/// <summary>The result of <see cref="LedgerWorkflow"/>.</summary>
/// <param name="Steps">Steps completed.</param>
/// <param name="NewEffects">Steps whose effect this execution applied (the rest found theirs already applied).</param>
public sealed record LedgerOutput(int Steps, int NewEffects);

/// <summary>
/// A chain of side effects written to <c>spine_demo_ledger</c> through each step's idempotency key:
/// the ledger shows whether any effect happened twice after a crash.
/// </summary>
[Workflow("ledger")]
public sealed class LedgerWorkflow(SpineDatabase database) : IWorkflow<LedgerInput, LedgerOutput>
{
    /// <inheritdoc />
    public async Task<LedgerOutput> RunAsync(IWorkflowContext context, LedgerInput input)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(input);
        var applied = 0;
        for (var i = 1; i <= input.Steps; i++)
        {
            if (input.PauseSeconds > 0 && i == input.Steps / 2 + 1)
            {
                await context.SleepAsync(TimeSpan.FromSeconds(input.PauseSeconds));
            }

            var step = i;
            var isNew = await context.RunAsync($"effect-{step}", async s =>
            {
                await Task.Delay(input.StepMilliseconds, s.CancellationToken);
                return await DemoLedger.ApplyAsync(database, s.IdempotencyKey, s.RunId, step, s.CancellationToken) == 1;
            });
            applied += isNew ? 1 : 0;
        }

        return new LedgerOutput(input.Steps, applied);
    }
}
