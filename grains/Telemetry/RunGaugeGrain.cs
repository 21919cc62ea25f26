using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Spine.Hosting;
using Spine.Runs;
using Spine.Storage;

namespace Spine.Telemetry;

/// <summary>
/// Reads the run index for the gauges of approvals waiting and of the dead-letter queue (one grouped scan of the
/// status index) and publishes the counts on its silo (<see cref="SpineGauges"/>). Every silo's
/// <see cref="RunGaugeStarter"/> asks it to refresh, so it comes back on another silo when its own dies.
/// </summary>
internal sealed class RunGaugeGrain(SpineDatabase database) : Grain, IRunGaugeGrain
{
    private long _readTimestamp;

    public async Task RefreshAsync(TimeSpan period)
    {
        if (_readTimestamp != 0 && Stopwatch.GetElapsedTime(_readTimestamp) < period / 2)
        {
            return;
        }

        // An approval's age runs from its request (the index row may change while it waits, on a signal or an escalation).
        await using var command = database.DataSource.CreateCommand("""
            SELECT now(), r.workflow_type, r.status, count(*), min(coalesce(a.requested_at, r.updated_at))
            FROM spine_runs r
            LEFT JOIN LATERAL (
                SELECT max(j.recorded_at) AS requested_at FROM spine_journal j
                WHERE r.status = @awaitingApproval AND j.run_id = r.run_id AND j.kind = 13) a ON true
            WHERE r.status IN (@awaitingApproval, @deadLettered)
            GROUP BY r.workflow_type, r.status
            """);
        command.Parameters.AddWithValue("awaitingApproval", (short)RunStatus.AwaitingApproval);
        command.Parameters.AddWithValue("deadLettered", (short)RunStatus.DeadLettered);
        var waiting = new Dictionary<string, (long, DateTimeOffset)>(StringComparer.Ordinal);
        var dead = new Dictionary<string, long>(StringComparer.Ordinal);
        DateTimeOffset? now = null;
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                now ??= reader.GetFieldValue<DateTimeOffset>(0);
                var type = reader.GetString(1);
                if (reader.GetInt16(2) == (short)RunStatus.AwaitingApproval)
                {
                    waiting[type] = (reader.GetInt64(3), reader.GetFieldValue<DateTimeOffset>(4));
                }
                else
                {
                    dead[type] = reader.GetInt64(3);
                }
            }
        }

        _readTimestamp = Stopwatch.GetTimestamp();
        SpineGauges.Index(new IndexSnapshot(this, now ?? DateTimeOffset.UtcNow, _readTimestamp, period * 3, waiting, dead));
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        SpineGauges.WithdrawIndex(this);
        return Task.CompletedTask;
    }
}

/// <summary>Asks <see cref="RunGaugeGrain"/> to refresh every <see cref="SpineOptions.GaugePeriod"/>, from every silo.</summary>
internal sealed class RunGaugeStarter(IGrainFactory grains, IOptions<SpineOptions> options, ILogger<RunGaugeStarter> logger) : SiloTicker(logger)
{
    protected override TimeSpan Period => options.Value.GaugePeriod;

    protected override Task TickAsync() => grains.GetGrain<IRunGaugeGrain>(0).RefreshAsync(Period);
}
