using Microsoft.Extensions.Logging;
using Polly;
using Polly.Retry;
using Spine.Errors;

namespace Spine.Storage;

/// <summary>
/// Rides out a PostgreSQL outage in place: an operation that failed because the server was unreachable,
/// restarting or overloaded is tried again with capped exponential backoff, for as long as the caller's
/// token allows. A run keeps its activation and continues within about a second of the server answering
/// again; the recovery sweep is only the backstop for a silo that died.
/// </summary>
public sealed partial class StorageRetry
{
    /// <summary>The longest pause between two tries.</summary>
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(1);

    private readonly ResiliencePipeline _pipeline;

    /// <summary>Creates the retry for a silo.</summary>
    public StorageRetry(TimeProvider time, ILogger<StorageRetry> logger)
    {
        _pipeline = new ResiliencePipelineBuilder { TimeProvider = time }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<StorageUnavailableException>(e => e.IsTransient),
                MaxRetryAttempts = int.MaxValue,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromMilliseconds(50),
                MaxDelay = MaxDelay,
                OnRetry = args =>
                {
                    // The first failure and then one in twenty: an outage of a minute logs a handful of lines per operation.
                    if (args.AttemptNumber % 20 == 0)
                    {
                        LogRetrying(logger, args.Outcome.Exception?.Message, args.AttemptNumber + 1);
                    }

                    return default;
                },
            })
            .Build();
    }

    /// <summary>Runs <paramref name="operation"/> until it succeeds, fails for a reason other than an outage, or <paramref name="cancellationToken"/> fires.</summary>
    public async Task ExecuteAsync(Func<CancellationToken, Task> operation, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(operation);
        await ExecuteAsync(async token =>
        {
            await operation(token);
            return true;
        }, cancellationToken);
    }

    /// <summary>Runs <paramref name="operation"/> like <see cref="ExecuteAsync(Func{CancellationToken, Task}, CancellationToken)"/> and returns its result.</summary>
    public async Task<T> ExecuteAsync<T>(Func<CancellationToken, Task<T>> operation, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(operation);

        // The first try goes straight to the operation: the pipeline costs nothing while PostgreSQL answers.
        try
        {
            return await operation(cancellationToken);
        }
        catch (StorageUnavailableException e) when (e.IsTransient && !cancellationToken.IsCancellationRequested)
        {
        }

        // Tries after the first resume on the caller's scheduler: inside a grain, the operation runs in the
        // grain's turn like any of its code (it may read the grain's state or register a reminder).
        var context = ResilienceContextPool.Shared.Get(continueOnCapturedContext: true, cancellationToken);
        try
        {
            return await _pipeline.ExecuteAsync(static async (ctx, op) => await op(ctx.CancellationToken), context, operation);
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Storage unavailable ({Detail}); trying again in place (try {Attempt})")]
    private static partial void LogRetrying(ILogger logger, string? detail, int attempt);
}
