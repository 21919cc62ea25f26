using System.Collections.Concurrent;
using Polly;
using Polly.Timeout;
using Spine.Pipeline;

namespace Spine.Timeouts;

/// <summary>
/// Attempt stage: bounds an attempt of a tool with a timeout by that timeout (Polly's timeout strategy; the
/// tool sees it as its cancellation token). An attempt that times out fails with a
/// <see cref="TimeoutException"/>: transient, and with an unknown outcome, since the tool may have acted.
/// </summary>
internal sealed class TimeoutStage(TimeProvider time) : IAttemptStage
{
    private readonly ConcurrentDictionary<TimeSpan, ResiliencePipeline> _pipelines = new();

    public int Order => StepStageOrder.Timeout;

    public async Task<string> InvokeAsync(StepAttempt attempt, IStepRun run, AttemptHandler next)
    {
        if (attempt.Tool?.Definition.Timeout is not { } limit)
        {
            return await next(attempt, run);
        }

        var pipeline = _pipelines.GetOrAdd(limit, l => new ResiliencePipelineBuilder { TimeProvider = time }.AddTimeout(l).Build());
        try
        {
            return await pipeline.ExecuteAsync(async token => await next(attempt with { Cancellation = token }, run), attempt.Cancellation);
        }
        catch (TimeoutRejectedException) when (!attempt.Cancellation.IsCancellationRequested)
        {
            throw new TimeoutException($"Tool '{attempt.Tool.Definition.Name}' {attempt.Tool.Definition.Version} did not answer within {limit} (attempt {attempt.Number}).");
        }
    }
}
