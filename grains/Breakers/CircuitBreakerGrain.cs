using Microsoft.Extensions.Options;
using Spine.Hosting;
using Spine.Runs;
using Spine.Tools;

namespace Spine.Breakers;

/// <summary>The durable part of a breaker: only transitions are written, never individual outcomes.</summary>
[GenerateSerializer, Alias("spine.BreakerRecord")]
public sealed class BreakerRecord
{
    /// <summary>The state.</summary>
    [Id(0)] public BreakerState State { get; set; }

    /// <summary>When an open breaker's cool-down ends.</summary>
    [Id(1)] public DateTimeOffset? OpenUntil { get; set; }

    /// <summary>How often the breaker has opened.</summary>
    [Id(2)] public int TimesOpened { get; set; }
}

/// <summary>
/// One tool's circuit breaker for the whole cluster. Silos report outcomes in batches
/// (<see cref="CircuitBreakerCache"/>); the failure rate over a sliding window of buckets decides when
/// it opens. After the cool-down it is half-open: one probe call decides whether it closes again.
/// The decisions are <see cref="BreakerCircuit"/>'s; the grain persists the transitions.
/// </summary>
public sealed class CircuitBreakerGrain(
    [PersistentState("breaker", "spine")] IPersistentState<BreakerRecord> record,
    ToolRegistry tools,
    IOptions<SpineOptions> options,
    TimeProvider time) : Grain, ICircuitBreakerGrain
{
    private BreakerCircuit? _circuit;

    // Created on first use: the persisted record is loaded by then.
    private BreakerCircuit Circuit => _circuit ??= new BreakerCircuit(record.State, time);

    private string Tool => this.GetPrimaryKeyString();

    private BreakerPolicy Policy => tools.TryResolve(Tool)?.Definition.Breaker ?? options.Value.Breaker;

    /// <inheritdoc />
    public async Task<BreakerVerdict> ReportAsync(int successes, int failures)
    {
        if (Circuit.Report(successes, failures, Policy))
        {
            await record.WriteStateAsync();
        }

        return Verdict();
    }

    /// <inheritdoc />
    public Task<BreakerVerdict> GetVerdictAsync() => Task.FromResult(Verdict());

    /// <inheritdoc />
    public Task<bool> TryAcquireProbeAsync() => Task.FromResult(Circuit.TryAcquireProbe(Policy));

    /// <inheritdoc />
    public async Task<BreakerVerdict> ReportProbeAsync(bool success)
    {
        if (Circuit.ReportProbe(success, Policy))
        {
            await record.WriteStateAsync();
        }

        return Verdict();
    }

    /// <inheritdoc />
    public async Task<BreakerVerdict> ResetAsync()
    {
        if (Circuit.Reset())
        {
            await record.WriteStateAsync();
        }

        return Verdict();
    }

    /// <inheritdoc />
    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        Telemetry.SpineGauges.Withdraw(this, Tool);
        return Task.CompletedTask;
    }

    private BreakerVerdict Verdict()
    {
        var (calls, rate) = Circuit.Rate(Policy);
        Telemetry.SpineGauges.Breaker(this, Tool, Circuit.State);
        return new BreakerVerdict(Tool, Circuit.State, Circuit.OpenUntil, rate, calls);
    }
}
