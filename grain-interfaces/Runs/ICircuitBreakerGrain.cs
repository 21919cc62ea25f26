namespace Spine.Runs;

/// <summary>The state of a tool's circuit breaker.</summary>
public enum BreakerState
{
    /// <summary>Calls go through; outcomes are counted.</summary>
    Closed,

    /// <summary>Calls fail fast without reaching the tool until the cool-down ends.</summary>
    Open,

    /// <summary>The cool-down ended: one probe call may go through; its outcome closes or reopens the breaker.</summary>
    HalfOpen,
}

/// <summary>A breaker's verdict, cached by silos for a short time.</summary>
/// <param name="Tool">The tool.</param>
/// <param name="State">The state.</param>
/// <param name="OpenUntil">When the cool-down of an open breaker ends.</param>
/// <param name="FailureRate">The failure rate in the current window (0..1).</param>
/// <param name="Calls">Calls counted in the current window.</param>
[GenerateSerializer, Immutable, Alias("spine.BreakerVerdict")]
public sealed record BreakerVerdict(
    [property: Id(0)] string Tool,
    [property: Id(1)] BreakerState State,
    [property: Id(2)] DateTimeOffset? OpenUntil,
    [property: Id(3)] double FailureRate,
    [property: Id(4)] int Calls);

/// <summary>One tool's circuit breaker, shared by every silo. Keyed by tool name.</summary>
[Alias("spine.ICircuitBreakerGrain")]
public interface ICircuitBreakerGrain : IGrainWithStringKey
{
    /// <summary>Adds a silo's batch of outcomes and returns the resulting verdict.</summary>
    [Alias("ReportAsync")]
    Task<BreakerVerdict> ReportAsync(int successes, int failures);

    /// <summary>The current verdict.</summary>
    [Alias("GetVerdictAsync")]
    Task<BreakerVerdict> GetVerdictAsync();

    /// <summary>In <see cref="BreakerState.HalfOpen"/>, grants the single probe call; false when another caller holds it.</summary>
    [Alias("TryAcquireProbeAsync")]
    Task<bool> TryAcquireProbeAsync();

    /// <summary>The probe's outcome: success closes the breaker, failure reopens it for another cool-down.</summary>
    [Alias("ReportProbeAsync")]
    Task<BreakerVerdict> ReportProbeAsync(bool success);

    /// <summary>Operator override: close the breaker and forget the window.</summary>
    [Alias("ResetAsync")]
    Task<BreakerVerdict> ResetAsync();
}
