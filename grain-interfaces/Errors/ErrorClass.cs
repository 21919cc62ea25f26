namespace Spine.Errors;

/// <summary>
/// What a failed step outcome means for recovery. Recorded in the journal with every failed attempt as
/// its snake_case name (<see cref="ErrorClasses.Name"/>).
/// </summary>
public enum ErrorClass
{
    /// <summary>May succeed if tried again: timeouts, connection resets, HTTP 429 and 5xx. Retried with backoff.</summary>
    Transient,

    /// <summary>Will fail again: validation errors, unknown tools, bad input. Not retried.</summary>
    Terminal,

    /// <summary>A guardrail refused the call.</summary>
    PolicyDenied,

    /// <summary>A token or cost ceiling was reached.</summary>
    BudgetExhausted,

    /// <summary>A human rejected the step.</summary>
    ApprovalRejected,

    /// <summary>Nobody decided before the approval deadline.</summary>
    ApprovalTimedOut,

    /// <summary>The tool's circuit breaker is open: the call did not reach the tool and is retried after the cool-down.</summary>
    CircuitOpen,

    /// <summary>The run was cancelled.</summary>
    Cancelled,

    /// <summary>The workflow code no longer matches its journal.</summary>
    NonDeterminism,
}

/// <summary>Names of <see cref="ErrorClass"/> values as the journal stores them.</summary>
public static class ErrorClasses
{
    /// <summary>The stored name, e.g. <c>circuit_open</c>.</summary>
    public static string Name(this ErrorClass value) => value switch
    {
        ErrorClass.Transient => "transient",
        ErrorClass.Terminal => "terminal",
        ErrorClass.PolicyDenied => "policy_denied",
        ErrorClass.BudgetExhausted => "budget_exhausted",
        ErrorClass.ApprovalRejected => "approval_rejected",
        ErrorClass.ApprovalTimedOut => "approval_timed_out",
        ErrorClass.CircuitOpen => "circuit_open",
        ErrorClass.Cancelled => "cancelled",
        ErrorClass.NonDeterminism => "non_determinism",
        _ => throw new ArgumentOutOfRangeException(nameof(value), value, null),
    };

    /// <summary>Parses a stored name; unknown names read as <see cref="ErrorClass.Terminal"/>.</summary>
    public static ErrorClass Parse(string? name) => name switch
    {
        "transient" => ErrorClass.Transient,
        "policy_denied" => ErrorClass.PolicyDenied,
        "budget_exhausted" => ErrorClass.BudgetExhausted,
        "approval_rejected" => ErrorClass.ApprovalRejected,
        "approval_timed_out" => ErrorClass.ApprovalTimedOut,
        "circuit_open" => ErrorClass.CircuitOpen,
        "cancelled" => ErrorClass.Cancelled,
        "non_determinism" => ErrorClass.NonDeterminism,
        _ => ErrorClass.Terminal,
    };
}

/// <summary>Throw from a tool or a side effect to say: this may work if tried again.</summary>
[GenerateSerializer, Alias("spine.TransientException")]
public sealed class TransientException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public TransientException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }

    /// <inheritdoc />
    public override string Kind => "transient";
}

/// <summary>Throw from a tool or a side effect to say: trying again will not help.</summary>
[GenerateSerializer, Alias("spine.TerminalException")]
public sealed class TerminalException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public TerminalException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }

    /// <inheritdoc />
    public override string Kind => "terminal";
}

/// <summary>The tool's circuit breaker is open; the call did not reach the tool.</summary>
[GenerateSerializer, Alias("spine.CircuitOpenException")]
public sealed class CircuitOpenException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public CircuitOpenException(string tool, DateTimeOffset retryAfter)
        : base($"The circuit breaker of tool '{tool}' is open until {retryAfter:O}; the call was not made.")
    {
        Tool = tool;
        RetryAfter = retryAfter;
    }

    /// <summary>The tool.</summary>
    [Id(0)] public string Tool { get; private set; }

    /// <summary>When the breaker lets a probe through.</summary>
    [Id(1)] public DateTimeOffset RetryAfter { get; private set; }

    /// <inheritdoc />
    public override string Kind => "circuit_open";
}

/// <summary>
/// Throw from a tool (or a chat client) when the service it calls answered "too many requests" (HTTP 429): the attempt
/// is transient, the call's rate limits hold every permit back until <see cref="RetryAfter"/> has passed, and the
/// retry waits at least that long. An <see cref="System.Net.Http.HttpRequestException"/> with status 429 counts the
/// same, without a Retry-After.
/// </summary>
[GenerateSerializer, Alias("spine.RateLimitedException")]
public sealed class RateLimitedException : SpineException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What the service said.</param>
    /// <param name="retryAfter">The service's Retry-After, when it sent one.</param>
    /// <param name="innerException">The service's own error.</param>
    public RateLimitedException(string message, TimeSpan? retryAfter = null, Exception? innerException = null)
        : base(message, innerException)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(retryAfter ?? TimeSpan.Zero, TimeSpan.Zero, nameof(retryAfter));
        RetryAfter = retryAfter;
    }

    /// <summary>How long the service asked callers to wait.</summary>
    [Id(0)] public TimeSpan? RetryAfter { get; private set; }

    /// <inheritdoc />
    public override string Kind => "rate_limited";
}

/// <summary>An operator action does not fit the run's state (e.g. retrying a step of a run that is not awaiting an operator).</summary>
[GenerateSerializer, Alias("spine.InvalidRunStateException")]
public sealed class InvalidRunStateException : SpineException
{
    /// <summary>Creates the exception.</summary>
    public InvalidRunStateException(string runId, Spine.Runs.RunStatus status, string action)
        : base($"Run {runId} is {status}: cannot {action}.")
    {
        RunId = runId;
        Status = status;
        Action = action;
    }

    /// <summary>The run.</summary>
    [Id(0)] public string RunId { get; private set; }

    /// <summary>Its status.</summary>
    [Id(1)] public Spine.Runs.RunStatus Status { get; private set; }

    /// <summary>What was asked.</summary>
    [Id(2)] public string Action { get; private set; }

    /// <inheritdoc />
    public override string Kind => "invalid_run_state";
}
