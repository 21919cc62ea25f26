using Spine.Errors;
using Spine.Journal;
using Spine.Runs;

namespace Spine.Recovery;

/// <summary>What a step's journaled events say about its attempts, read in one pass.</summary>
internal sealed record StepAttempts(int AttemptNumber, int Failures, DateTimeOffset? FirstFailureAt, DateTimeOffset? CircuitOpenSince, JournalRow? Last)
{
    /// <summary>
    /// Reads the events since the last operator decision (a decision resets the retry budget): the next
    /// attempt's number (over all events), the failures that count against the policy, when the first of
    /// them happened, and when the step first met an open breaker, if it did.
    /// </summary>
    public static StepAttempts Read(IReadOnlyList<JournalRow> events)
    {
        ArgumentNullException.ThrowIfNull(events);
        var attempts = 0;
        var reset = -1;
        for (var i = 0; i < events.Count; i++)
        {
            attempts += events[i].Kind is JournalKind.AttemptFailed or JournalKind.Escalated ? 1 : 0;
            reset = events[i].Kind == JournalKind.OperatorDecided ? i : reset;
        }

        var failures = 0;
        DateTimeOffset? first = null;
        DateTimeOffset? openSince = null;
        for (var i = reset + 1; i < events.Count; i++)
        {
            if (events[i].Kind != JournalKind.AttemptFailed)
            {
                continue;
            }

            first ??= events[i].RecordedAt;
            if (RunPayloads.ReadError(events[i].Payload).Class == ErrorClass.CircuitOpen.Name())
            {
                openSince ??= events[i].RecordedAt;
            }
            else
            {
                failures++;
            }
        }

        return new StepAttempts(attempts + 1, failures, first, openSince, reset + 1 < events.Count ? events[^1] : null);
    }
}
