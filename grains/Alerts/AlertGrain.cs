using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Spine.Hosting;
using Spine.Telemetry;

namespace Spine.Alerts;

/// <summary>
/// The anomaly detector (<see cref="IAlertGrain"/>): judges the runs that ended since it last did, in index order, by
/// <see cref="AlertRules"/>; stores what it raises (a repeat of an evaluation after a crash stores nothing twice), logs
/// and counts it, then posts every undelivered alert to the webhook. Its baselines are grain state in PostgreSQL.
/// </summary>
internal sealed partial class AlertGrain(
    [PersistentState("alerts", "spine")] IPersistentState<AlertRecord> record,
    AlertStore store,
    AlertWebhook webhook,
    IOptions<AlertOptions> options,
    ILogger<AlertGrain> logger) : Grain, IAlertGrain
{
    /// <summary>Runs judged per evaluation at most; the rest wait for the next one.</summary>
    private const int MaxRunsPerEvaluation = 5_000;

    public async Task<IReadOnlyList<AlertView>> EvaluateAsync()
    {
        var settings = options.Value;
        var state = record.State;
        var now = await store.NowAsync(CancellationToken.None);
        var until = now - settings.SettleLag;
        if (state.JudgedUntil is not { } from)
        {
            // The first evaluation judges nothing: baselines are built from the runs that end from now on.
            state.JudgedUntil = until;
            await record.WriteStateAsync();
            return [];
        }

        var ended = until > from ? await store.EndedRunsAsync(from, state.JudgedRunId, until, MaxRunsPerEvaluation, CancellationToken.None) : [];

        // The key of what this evaluation raises: where it started, so that a repeat of it (its state was not written) matches.
        var start = $"{from.UtcTicks.ToString(CultureInfo.InvariantCulture)}/{state.JudgedRunId}";
        var raised = new List<(RaisedAlert, string)>();
        foreach (var type in ended.GroupBy(r => r.Run.WorkflowType))
        {
            if (!state.Types.TryGetValue(type.Key, out var baseline))
            {
                state.Types[type.Key] = baseline = new WorkflowBaseline();
            }

            raised.AddRange(AlertRules.Judge(baseline, type.Key, [.. type.Select(r => r.Run)], settings, now)
                .Select((a, i) => (a, $"{start}/{a.WorkflowType}/{a.Rule}/{a.Subject}/{i.ToString(CultureInfo.InvariantCulture)}")));
        }

        if (ended.Count > 0)
        {
            (state.JudgedUntil, state.JudgedRunId) = ended.Count == MaxRunsPerEvaluation ? (ended[^1].EndedAt, ended[^1].Run.RunId) : (until, "");
        }
        else
        {
            (state.JudgedUntil, state.JudgedRunId) = (until, "");
        }

        // Stored before the baselines move on: a crash in between repeats this evaluation, whose alerts are stored already.
        var stored = await store.AddAsync(raised, CancellationToken.None);
        await record.WriteStateAsync();
        foreach (var alert in stored)
        {
            LogRaised(logger, alert.Rule, alert.WorkflowType, alert.Message);
            SpineTelemetry.AlertsRaised.Add(1, new("spine.alert.rule", alert.Rule), new("spine.workflow.type", alert.WorkflowType));
        }

        if (webhook.Configured)
        {
            await DeliverAsync(settings);
        }

        return stored;
    }

    private async Task DeliverAsync(AlertOptions settings)
    {
        foreach (var alert in await store.UndeliveredAsync(settings.MaxDeliveryAttempts, 100, CancellationToken.None))
        {
            var (attempts, error) = await webhook.DeliverAsync(alert, CancellationToken.None);
            await store.RecordDeliveryAsync(alert.AlertId, attempts, error is null, error, CancellationToken.None);
            if (error is not null)
            {
                LogDeliveryFailed(logger, alert.AlertId, alert.DeliveryAttempts + attempts, error);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Alert {Rule} for workflow type {WorkflowType}: {Message}")]
    private static partial void LogRaised(ILogger logger, string rule, string workflowType, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Alert {AlertId} could not be posted to the webhook ({Attempts} tries so far): {Error}")]
    private static partial void LogDeliveryFailed(ILogger logger, long alertId, int attempts, string error);
}

/// <summary>Asks <see cref="AlertGrain"/> to evaluate every <see cref="AlertOptions.EvaluationPeriod"/>, from every silo.</summary>
internal sealed class AlertTicker(IGrainFactory grains, IOptions<AlertOptions> options, ILogger<AlertTicker> logger) : SiloTicker(logger)
{
    protected override TimeSpan Period => options.Value.EvaluationPeriod;

    protected override bool Enabled => options.Value.Enabled;

    protected override Task TickAsync() => grains.GetGrain<IAlertGrain>(0).EvaluateAsync();
}
