using System.Text.Json;
using Spine.Recovery;
using Spine.Workflows;

namespace Spine.Silo.Demo;

/// <summary>The input of <see cref="ChaosWorkflow"/>.</summary>
/// <param name="Steps">How many tool steps.</param>
/// <param name="FailureRate">The share of tool attempts that fail transiently.</param>
/// <param name="FailFirst">How many first attempts of every step fail.</param>
/// <param name="Seed">Seeds the failure draws.</param>
/// <param name="RetryDelayMilliseconds">The first retry delay; 0 keeps the tool's policy.</param>
/// <param name="WorkMilliseconds">How long each tool call works.</param>
/// <param name="MaxAttempts">Attempts per step when <paramref name="RetryDelayMilliseconds"/> sets the policy.</param>
public sealed record ChaosInput(int Steps = 10, double FailureRate = 0.15, int FailFirst = 0, long Seed = 0, int RetryDelayMilliseconds = 0, int WorkMilliseconds = 0, int MaxAttempts = 15);

/// <summary>The result of <see cref="ChaosWorkflow"/>.</summary>
/// <param name="Steps">Steps completed.</param>
public sealed record ChaosOutput(int Steps);

/// <summary>A chain of <c>ledger_apply</c> tool calls that fail transiently on purpose: recovery under load.</summary>
[Workflow("chaos")]
public sealed class ChaosWorkflow : IWorkflow<ChaosInput, ChaosOutput>
{
    /// <inheritdoc />
    public async Task<ChaosOutput> RunAsync(IWorkflowContext context, ChaosInput input)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(input);
        var options = input.RetryDelayMilliseconds > 0
            ? new StepOptions
            {
                Retry = new RetryPolicy
                {
                    MaxAttempts = input.MaxAttempts,
                    InitialDelay = TimeSpan.FromMilliseconds(input.RetryDelayMilliseconds),
                    MaxDelay = TimeSpan.FromMilliseconds(Math.Max(input.RetryDelayMilliseconds, 2000)),
                    Jitter = 0,
                },
            }
            : null;
        for (var step = 1; step <= input.Steps; step++)
        {
            var arguments = JsonSerializer.SerializeToElement(new
            {
                step,
                failureRate = input.FailureRate,
                failFirst = input.FailFirst,
                seed = input.Seed,
                workMilliseconds = input.WorkMilliseconds,
            });
            await context.CallToolAsync("ledger_apply", arguments, options: options);
        }

        return new ChaosOutput(input.Steps);
    }
}
