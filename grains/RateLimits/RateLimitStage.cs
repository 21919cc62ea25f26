using System.Net;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Logging;
using Spine.Errors;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Runs;

namespace Spine.RateLimits;

/// <summary>What a <see cref="JournalKind.RateLimited"/> row records: the limit that had no permit, and until when the call waits.</summary>
internal sealed record RateLimitedPayload(string Limit, DateTimeOffset Until);

/// <summary>
/// Attempt stage of tool and model calls: takes a permit of each of the call's rate limits before the attempt.
/// A permit within <see cref="RateLimitOptions.MaxInMemoryWait"/> is waited for in memory; one further away is
/// journaled and waited for durably (the run's reminder), then asked for again. A rate-limited answer from the
/// tool or model (<see cref="RateLimitedException"/>, HTTP 429) holds the limits back for its Retry-After, and the
/// attempt fails as transient.
/// </summary>
internal sealed partial class RateLimitStage(RateLimitLeases leases, Budgets.CallCosts costs, ILogger<RateLimitStage> logger) : IAttemptStage
{
    public int Order => StepStageOrder.RateLimit;

    // A call without a limit passes straight through, without a state machine of its own.
    public Task<string> InvokeAsync(StepAttempt attempt, IStepRun run, AttemptHandler next)
    {
        IReadOnlyList<RateLimit> limits = attempt.Call.Kind switch
        {
            JournalKind.Tool when attempt.Call.Tool is { } tool => leases.Registry.ForTool(tool.Name),
            JournalKind.Model => leases.Registry.ForChat(attempt.Call.ChatClient),
            _ => [],
        };
        return limits.Count == 0 ? next(attempt, run) : LimitAsync(attempt, limits, run, next);
    }

    private async Task<string> LimitAsync(StepAttempt attempt, IReadOnlyList<RateLimit> limits, IStepRun run, AttemptHandler next)
    {
        var call = attempt.Call;
        var events = run.EventsOf(call.Step);
        if (events.Count > 0 && events[^1].Kind == JournalKind.RateLimited)
        {
            // A durable wait journaled before this execution: it ends first.
            await run.WaitUntilAsync(RunPayloads.Read<RateLimitedPayload>(events[^1].Payload).Until);
        }

        while (true)
        {
            run.ThrowIfCancelRequested();
            var wait = await AcquireAsync(attempt, limits, run);
            if (wait is null)
            {
                break;
            }

            await run.AppendAsync(JournalKind.RateLimited, call.Step, call.Name, true, RunPayloads.Write(wait));
            await run.WaitUntilAsync(wait.Until);
        }

        try
        {
            return await next(attempt, run);
        }
        catch (Exception e) when (!run.Stopping.IsCancellationRequested && RetryAfterOf(e, leases.Registry.Options) is { } after)
        {
            var until = run.Time.GetUtcNow() + after;
            foreach (var limit in limits)
            {
                leases.For(limit, run.AccountId).DropSpare();
                try
                {
                    await leases.Grain(limit, run.AccountId).PenalizeAsync(until);
                }
                catch (Exception report) when (!run.Stopping.IsCancellationRequested)
                {
                    LogPenaltyFailed(logger, report, limit.Name);
                }
            }

            throw;
        }
    }

    // Null: every limit granted a permit, now. Else the limit without a permit in reach, and when to ask again.
    private async Task<RateLimitedPayload?> AcquireAsync(StepAttempt attempt, IReadOnlyList<RateLimit> limits, IStepRun run)
    {
        foreach (var limit in limits)
        {
            var amount = limit.Tokens ? TokensOf(attempt.Call) : 1;
            using var lease = await leases.For(limit, run.AccountId).AcquireAsync(amount, attempt.Cancellation);
            if (!lease.IsAcquired)
            {
                var after = lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) ? retryAfter : TimeSpan.Zero;
                return new RateLimitedPayload(limit.Name, run.Time.GetUtcNow() + after);
            }
        }

        return null;
    }

    // What a model call counts against a tokens limit: its input, counted, and its maximum output.
    private int TokensOf(StepCall call) =>
        call.Model is { } model ? (int)Math.Clamp(costs.WorstCase(model.Messages, model.Options, call.ChatClient).Tokens, 1, int.MaxValue) : 1;

    /// <summary>How long a rate-limited answer asks callers to wait; null: <paramref name="e"/> is not one.</summary>
    internal static TimeSpan? RetryAfterOf(Exception e, RateLimitOptions options) => e switch
    {
        RateLimitedException limited => limited.RetryAfter ?? options.DefaultRetryAfter,
        HttpRequestException { StatusCode: HttpStatusCode.TooManyRequests } => options.DefaultRetryAfter,
        { InnerException: { } inner } when inner != e => RetryAfterOf(inner, options),
        _ => null,
    };

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reporting a rate-limited answer to limit {Limit} failed")]
    private static partial void LogPenaltyFailed(ILogger logger, Exception exception, string limit);
}
