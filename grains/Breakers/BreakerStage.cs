using Microsoft.Extensions.Logging;
using Spine.Errors;
using Spine.Pipeline;
using Spine.Recovery;

namespace Spine.Breakers;

/// <summary>
/// Attempt stage of tool calls: asks the tool's circuit breaker for a permit (an open breaker fails the
/// attempt with <see cref="CircuitOpenException"/>, which the retry stage waits out) and tells it how the
/// attempt went. Only failures that say something about the tool's health move the breaker.
/// </summary>
/// <remarks>
/// The breaker is advisory: failing to tell it how an attempt went never fails the attempt (a tool call that
/// succeeded would otherwise run again).
/// </remarks>
internal sealed partial class BreakerStage(CircuitBreakerCache breakers, ILogger<BreakerStage> logger) : IAttemptStage
{
    public int Order => StepStageOrder.Breaker;

    // A call that is not a tool call passes straight through, without a state machine of its own.
    public Task<string> InvokeAsync(StepAttempt attempt, IStepRun run, AttemptHandler next) =>
        attempt.Tool is { } tool ? GuardAsync(attempt, tool, run, next) : next(attempt, run);

    private async Task<string> GuardAsync(StepAttempt attempt, Tools.RegisteredTool tool, IStepRun run, AttemptHandler next)
    {
        var name = attempt.Call.Tool!.Name;
        var (permit, retryAt) = await breakers.AcquireAsync(name, tool.Definition.Breaker ?? run.Options.Breaker);
        if (permit == BreakerPermit.Rejected)
        {
            throw new CircuitOpenException(name, retryAt);
        }

        string payload;
        try
        {
            payload = await next(attempt, run);
        }
        catch (OperationCanceledException) when (attempt.Call.Kind != Journal.JournalKind.Compensated && Pipeline.StepPipeline.CancelledByRun(run))
        {
            // The run's cancel, not the tool, ended the attempt: it says nothing of the tool's health, so nothing is
            // reported (a probe's lease runs out, and another call probes).
            throw;
        }
        catch (Exception) when (!attempt.Reach.Reached)
        {
            // Stopped before the tool was called (a cancel at the last look): nothing to say of the tool's health.
            throw;
        }
        catch (Exception e) when (!run.Stopping.IsCancellationRequested)
        {
            var healthy = ErrorClassifier.Classify(e, tool.Definition.ClassifyError) != ErrorClass.Transient;
            await ReportAsync(name, permit, healthy, run);
            throw;
        }

        await ReportAsync(name, permit, true, run);
        return payload;
    }

    private async Task ReportAsync(string tool, BreakerPermit permit, bool success, IStepRun run)
    {
        try
        {
            if (permit == BreakerPermit.Probe)
            {
                await breakers.ReportProbeAsync(tool, success);
            }
            else
            {
                breakers.Record(tool, success);
            }
        }
        catch (Exception e) when (!run.Stopping.IsCancellationRequested)
        {
            LogReportFailed(logger, e, tool);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reporting an attempt's outcome to the breaker of tool {Tool} failed")]
    private static partial void LogReportFailed(ILogger logger, Exception exception, string tool);
}
