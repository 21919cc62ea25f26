using Spine.Errors;

namespace Spine.Client;

/// <summary>
/// A start (or replay) could not be confirmed within <see cref="SpineClientOptions.StartRetryTimeout"/>: the
/// cluster or PostgreSQL stayed unreachable. The run may or may not exist. Starting again with the same
/// request and idempotency key, or looking up <see cref="RunId"/>, settles it without creating a second run.
/// Raised by the client, never by a silo.
/// </summary>
public sealed class StartOutcomeUnknownException : SpineException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="runId">The run id every try went to.</param>
    /// <param name="waited">How long the client kept trying.</param>
    /// <param name="innerException">The last try's failure.</param>
    public StartOutcomeUnknownException(string runId, TimeSpan waited, Exception? innerException = null)
        : base($"Whether run {runId} started could not be confirmed within {waited.TotalSeconds:0.#} s" +
               (innerException is null ? "" : $" (last error: {innerException.Message.TrimEnd('.')})") +
               $"; look it up with GetAsync(\"{runId}\") or start again with the same idempotency key.", innerException)
    {
        RunId = runId;
        Waited = waited;
    }

    /// <summary>The run id every try went to: the run exists under it if the start landed.</summary>
    public string RunId { get; }

    /// <summary>How long the client kept trying.</summary>
    public TimeSpan Waited { get; }

    /// <inheritdoc />
    public override string Kind => "start_outcome_unknown";
}
