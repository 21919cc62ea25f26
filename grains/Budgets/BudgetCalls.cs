using Microsoft.Extensions.Logging;
using Polly;
using Polly.Retry;

namespace Spine.Budgets;

/// <summary>
/// Calls an account's <see cref="IBudgetGrain"/> through the loss of its silo: every call the stage and the run hook
/// make is idempotent by (run, step), so one whose answer was lost (the grain's silo died, the call timed out, its
/// write to PostgreSQL failed) is sent again, with capped backoff, until the grain answers or the run's activation ends.
/// </summary>
internal sealed partial class BudgetCalls
{
    private readonly ResiliencePipeline _pipeline;

    public BudgetCalls(IGrainFactory grains, TimeProvider time, ILogger<BudgetCalls> logger)
    {
        Grains = grains;
        _pipeline = new ResiliencePipelineBuilder { TimeProvider = time }
            .AddRetry(new RetryStrategyOptions
            {
                // A lost silo, a timeout, the grain's storage unreachable or moved: asked again until answered.
                ShouldHandle = new PredicateBuilder().Handle<Exception>(Transient),
                MaxRetryAttempts = int.MaxValue,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromMilliseconds(100),
                MaxDelay = TimeSpan.FromSeconds(2),
                OnRetry = args =>
                {
                    if (args.AttemptNumber % 10 == 0)
                    {
                        LogRetrying(logger, args.Outcome.Exception?.Message, args.AttemptNumber + 1);
                    }

                    return default;
                },
            })
            .Build();
    }

    public IGrainFactory Grains { get; }

    /// <summary>Failures that pass: anything else (a typed refusal, a bug) reaches the caller at once.</summary>
    private static bool Transient(Exception e) =>
        e is SiloUnavailableException or OrleansMessageRejectionException or TimeoutException or Orleans.Storage.InconsistentStateException
            or Errors.StorageUnavailableException { IsTransient: true };

    /// <summary>Calls <paramref name="account"/>'s budget until it answers (or <paramref name="stopping"/> fires).</summary>
    public async Task<T> CallAsync<T>(string account, Func<IBudgetGrain, Task<T>> call, CancellationToken stopping)
    {
        var budget = Grains.GetGrain<IBudgetGrain>(account);
        return await _pipeline.ExecuteAsync(async _ => await call(budget), stopping);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "An account's budget did not answer ({Reason}); asking again (try {Attempt})")]
    private static partial void LogRetrying(ILogger logger, string? reason, int attempt);
}
