using Spine.Pipeline;

namespace Spine.Timeouts;

/// <summary>
/// Attempt stage: bounds an attempt by its timeout (the call's <c>StepOptions.Timeout</c>, else a tool's definition's,
/// else for a model call <c>Spine:Timeouts</c>), on the silo's <see cref="TimeProvider"/> (the tool, model or step sees it
/// as its cancellation token). An attempt that times out fails with a <see cref="TimeoutException"/>: transient, and
/// with an unknown outcome, since the tool may have acted.
/// </summary>
/// <remarks>
/// Each attempt has a token source of its own, disposed when the attempt ends, and only that source's
/// firing counts as this stage's timeout: a tool's own timeouts (of its HTTP client, say) stay its own.
/// </remarks>
internal sealed class TimeoutStage(TimeProvider time) : IAttemptStage
{
    /// <summary>The longest timeout a token source accepts; a tool's timeout is checked against it at registration.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    public int Order => StepStageOrder.Timeout;

    // An attempt without a timeout passes straight through, without a state machine of its own.
    public Task<string> InvokeAsync(StepAttempt attempt, IStepRun run, AttemptHandler next) =>
        Limit(attempt, run) is { } limit ? BoundAsync(attempt, limit, run, next) : next(attempt, run);

    private static TimeSpan? Limit(StepAttempt attempt, IStepRun run) =>
        attempt.Call.Timeout
        ?? attempt.Tool?.Definition.Timeout
        ?? (attempt.Call.Kind == Journal.JournalKind.Model ? run.Options.Timeouts.ForModel(attempt.Call.ChatClient) : null);

    private async Task<string> BoundAsync(StepAttempt attempt, TimeSpan limit, IStepRun run, AttemptHandler next)
    {
        using var deadline = new CancellationTokenSource(limit, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(attempt.Cancellation, deadline.Token);
        try
        {
            return await next(attempt with { Cancellation = linked.Token }, run);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !attempt.Cancellation.IsCancellationRequested)
        {
            var what = attempt.Tool is { } tool ? $"Tool '{tool.Definition.Name}' {tool.Definition.Version}"
                : attempt.Call.Kind == Journal.JournalKind.Model ? $"Chat client '{attempt.Call.ChatClient ?? "default"}'"
                : $"Step {attempt.Call.Step} '{attempt.Call.Name}'";
            throw new TimeoutException($"{what} did not answer within {limit} (attempt {attempt.Number}).");
        }
    }
}
