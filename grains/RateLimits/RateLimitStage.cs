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
/// journaled and waited for durably (the run shows as executing meanwhile), then asked for again. A rate-limited answer from the
/// tool or model (<see cref="RateLimitedException"/>, HTTP 429) holds the limits back for its Retry-After, and the
/// attempt fails as transient.
/// </summary>
internal sealed partial class RateLimitStage(RateLimitLeases leases, Budgets.CallCosts costs, ILogger<RateLimitStage> logger) : IAttemptStage
{
    // Rounds of taking a call's permits before it goes with what it holds (one limit: always one round).
    private const int MaxRounds = 3;

    // The shortest durable wait: a refusal never turns into a loop of journal rows.
    private static readonly TimeSpan MinimumWait = TimeSpan.FromMilliseconds(100);

    // How long a call's first permit may wait for its others: a late permit shifts one call, by at most this.
    private static readonly TimeSpan MultiLimitSlack = TimeSpan.FromMilliseconds(50);

    public int Order => StepStageOrder.RateLimit;

    // A call without a limit passes straight through, without a state machine of its own.
    public Task<string> InvokeAsync(StepAttempt attempt, IStepRun run, AttemptHandler next)
    {
        IReadOnlyList<RateLimit> limits = attempt.Call.Kind switch
        {
            JournalKind.Tool or JournalKind.Compensated when attempt.Call.Tool is { } tool => leases.Registry.ForTool(tool.Name),
            JournalKind.Model => leases.Registry.ForChat(attempt.Call.ChatClient),
            _ => [],
        };
        return limits.Count == 0 ? next(attempt, run) : LimitAsync(attempt, limits, run, next);
    }

    private async Task<string> LimitAsync(StepAttempt attempt, IReadOnlyList<RateLimit> limits, IStepRun run, AttemptHandler next)
    {
        var call = attempt.Call;
        // A compensation's waits are not journaled (its step's rows are the forward call's and its own attempts):
        // a compensation that resumes simply asks again.
        var journaled = call.Kind != JournalKind.Compensated;
        var events = run.EventsOf(call.Step);
        if (journaled && events.Count > 0 && events[^1].Kind == JournalKind.RateLimited)
        {
            // A durable wait journaled before this execution: it ends first.
            await run.WaitUntilAsync(RunPayloads.Read<RateLimitedPayload>(events[^1].Payload).Until);
        }

        while (true)
        {
            // A cancelled run's compensations still run: only the forward call stops for a cancel.
            if (journaled)
            {
                run.ThrowIfCancelRequested();
            }

            var wait = await AcquireAsync(attempt, limits, run);
            if (wait is null)
            {
                break;
            }

            if (journaled)
            {
                await run.AppendAsync(JournalKind.RateLimited, call.Step, call.Name, true, RunPayloads.Write(wait));
            }

            await run.WaitUntilAsync(wait.Until);
        }

        // A cancel that came during an in-memory wait takes effect before the call, not after it.
        if (journaled)
        {
            run.ThrowIfCancelRequested();
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
                leases.For(limit, run.AccountId).Block(until);
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
    // A permit is used in its slot: one taken while a later limit made the call wait is taken again (a few rounds;
    // then the call goes with what it holds). Tokens go first: they are the longer wait, and a
    // request permit's wait (a slot of its rate) then seldom outlasts the tokens' slack.
    private async Task<RateLimitedPayload?> AcquireAsync(StepAttempt attempt, IReadOnlyList<RateLimit> limits, IStepRun run)
    {
        if (limits.Count > 1)
        {
            limits = [.. limits.OrderByDescending(l => l.Tokens)];
        }

        var taken = new long?[limits.Count];
        for (var round = 0; round < MaxRounds; round++)
        {
            for (var i = 0; i < limits.Count; i++)
            {
                if (taken[i] is { } at && Fresh(at, limits[i], attempt, run))
                {
                    continue;
                }

                var limiter = leases.For(limits[i], run.AccountId);

                var amount = limits[i].Tokens ? TokensOf(attempt.Call) : 1;
                RateLimitLease lease;
                try
                {
                    lease = await limiter.AcquireAsync(amount, attempt.Cancellation);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // The limit's grain did not answer: the call was not made, so the attempt failed with a known outcome.
                    throw new TransientException($"Rate limit '{limits[i].Name}' could not be checked ({e.GetType().Name}: {e.Message}); the call was not made.", e);
                }

                using (lease)
                {
                    if (!lease.IsAcquired)
                    {
                        var after = lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) ? retryAfter : TimeSpan.Zero;
                        return new RateLimitedPayload(limits[i].Name, run.Time.GetUtcNow() + (after > MinimumWait ? after : MinimumWait));
                    }
                }

                taken[i] = run.Time.GetTimestamp();
            }

            if (limits.Count == 1 || taken.Select((t, i) => Fresh(t!.Value, limits[i], attempt, run)).All(fresh => fresh))
            {
                return null;
            }
        }

        // Still not all fresh after the last round: the call goes with what it holds (at most one permit a little
        // late) rather than spend permits of every limit round after round.
        return null;
    }

    // Whether a permit taken at the timestamp may still be used along with the call's later ones.
    private bool Fresh(long taken, RateLimit limit, StepAttempt attempt, IStepRun run)
    {
        var stale = limit.Tokens ? LeasedRateLimiter.StaleFor(limit.Spec, TokensOf(attempt.Call)) : leases.For(limit, run.AccountId).Stale;
        return run.Time.GetElapsedTime(taken) <= (stale > MultiLimitSlack ? stale : MultiLimitSlack);
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
