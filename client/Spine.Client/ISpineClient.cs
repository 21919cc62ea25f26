using Spine.Runs;

namespace Spine.Client;

/// <summary>Starts, watches and controls workflow runs on a Spine cluster.</summary>
public interface ISpineClient
{
    /// <summary>Starts a run. With an idempotency key, a second start of the same key returns the first run.</summary>
    /// <exception cref="Spine.Errors.UnknownWorkflowException">No such workflow is registered on the silos.</exception>
    /// <exception cref="Spine.Errors.InvalidPayloadException">The input is not valid JSON for the workflow.</exception>
    /// <exception cref="Spine.Errors.PayloadTooLargeException">The input is over the configured ceiling.</exception>
    /// <exception cref="Spine.Errors.StorageUnavailableException">PostgreSQL is unreachable; nothing was started.</exception>
    Task<RunInfo> StartAsync(StartRunRequest request, CancellationToken cancellationToken = default);

    /// <summary>Starts a run with an input object serialised to JSON (camelCase).</summary>
    Task<RunInfo> StartAsync<TInput>(string workflowType, TInput input, string? idempotencyKey = null, string? accountId = null, int? workflowVersion = null, CancellationToken cancellationToken = default);

    /// <summary>The run's current snapshot.</summary>
    /// <exception cref="Spine.Errors.RunNotFoundException">No run has this id.</exception>
    Task<RunInfo> GetAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>Waits until the run is terminal (or <paramref name="timeout"/> passes) and returns its snapshot.</summary>
    Task<RunInfo> WaitAsync(string runId, TimeSpan? timeout = null, CancellationToken cancellationToken = default);

    /// <summary>Waits for the run's result.</summary>
    /// <exception cref="Spine.Errors.RunFailedException">The run ended Failed or Cancelled.</exception>
    Task<TResult> GetResultAsync<TResult>(string runId, CancellationToken cancellationToken = default);

    /// <summary>Requests cancellation; the run stops at its next step boundary.</summary>
    Task<RunInfo> CancelAsync(string runId, string? reason = null, CancellationToken cancellationToken = default);

    /// <summary>Lists runs by status, type and account, newest first.</summary>
    Task<IReadOnlyList<RunInfo>> ListAsync(RunQuery query, CancellationToken cancellationToken = default);

    /// <summary>The run's journal.</summary>
    Task<IReadOnlyList<JournalEntryView>> GetJournalAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>Recomputes the run's journal hash chain in the database.</summary>
    Task<JournalVerification> VerifyJournalAsync(string runId, CancellationToken cancellationToken = default);
}
