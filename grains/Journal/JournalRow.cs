using Spine.Runs;

namespace Spine.Journal;

/// <summary>What a journal row records. Stored as its integer value: never renumber a member.</summary>
public enum JournalKind : short
{
    /// <summary>The run was accepted (seq 0): workflow type, version, account, input.</summary>
    RunStarted = 0,

    /// <summary>A <c>ctx.RunAsync</c> side effect.</summary>
    Step = 1,

    /// <summary>A <c>ctx.CallToolAsync</c> tool call.</summary>
    Tool = 2,

    /// <summary>A <c>ctx.CallModelAsync</c> model turn.</summary>
    Model = 3,

    /// <summary>A <c>ctx.SleepAsync</c> durable timer: its wake-up time.</summary>
    Timer = 4,

    /// <summary>A recorded clock reading.</summary>
    Time = 5,

    /// <summary>A recorded random value.</summary>
    Random = 6,

    /// <summary>A caller asked to cancel the run.</summary>
    CancelRequested = 20,

    /// <summary>The run ended with a result.</summary>
    RunCompleted = 30,

    /// <summary>The run ended with an error.</summary>
    RunFailed = 31,

    /// <summary>The run ended by cancellation.</summary>
    RunCancelled = 32,
}

/// <summary>One row of <c>spine_journal</c>.</summary>
/// <param name="RunId">The run.</param>
/// <param name="Seq">Position in the run's journal, from 0, without gaps.</param>
/// <param name="Kind">What the row records.</param>
/// <param name="Step">The workflow step number for step kinds; null for run events.</param>
/// <param name="Name">The step name, tool name, or event name.</param>
/// <param name="Ok">False when the row records a failure.</param>
/// <param name="Payload">JSON text; its exact bytes are hashed.</param>
/// <param name="RecordedAt">When the row was recorded (UTC, microsecond precision as PostgreSQL keeps it).</param>
/// <param name="PrevHash">The previous row's hash (32 zero bytes for seq 0).</param>
/// <param name="Hash">This row's hash.</param>
public sealed record JournalRow(
    string RunId,
    int Seq,
    JournalKind Kind,
    int? Step,
    string Name,
    bool Ok,
    string? Payload,
    DateTimeOffset RecordedAt,
    byte[] PrevHash,
    byte[] Hash)
{
    /// <summary>True for the kinds a workflow step produces (those replay answers from).</summary>
    public bool IsStep => Step is not null;

    /// <summary>The operator view of the row.</summary>
    public JournalEntryView ToView() => new()
    {
        Seq = Seq,
        Kind = Kind.ToString(),
        Step = Step,
        Name = Name,
        Outcome = Ok ? "ok" : "error",
        PayloadJson = Payload,
        RecordedAt = RecordedAt,
        Hash = Convert.ToHexStringLower(Hash),
    };
}

/// <summary>The <c>spine_runs</c> index row of a run, written with the journal row that changes it.</summary>
public sealed record RunRow(
    string RunId,
    string WorkflowType,
    int WorkflowVersion,
    string? AccountId,
    string? IdempotencyKey,
    RunStatus Status,
    string? Result,
    string? ErrorKind,
    string? ErrorMessage,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt);
