using System.Diagnostics;
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

    private long _evaluatedAt;
    private Task _delivering = Task.CompletedTask;

    public Task TickAsync() =>

        // Every silo asks each period: one evaluation per half period is enough.
        _evaluatedAt != 0 && Stopwatch.GetElapsedTime(_evaluatedAt) < options.Value.EvaluationPeriod / 2 ? Task.CompletedTask : EvaluateAsync();

    public async Task<IReadOnlyList<AlertView>> EvaluateAsync()
    {
        var settings = options.Value;
        try
        {
            var stored = await JudgeAsync(settings);
            _evaluatedAt = Stopwatch.GetTimestamp();
            if (webhook.Configured && _delivering.IsCompleted)
            {
                // Off the grain's turns: a slow or failing receiver holds up no evaluation.
                _delivering = Task.Run(() => DeliverAsync(settings));
            }

            return stored;
        }
        catch
        {
            // The baselines in memory may have moved past what is stored: start again from the stored state.
            DeactivateOnIdle();
            throw;
        }
    }

    private async Task<List<AlertView>> JudgeAsync(AlertOptions settings)
    {
        var state = record.State;
        if (state.JudgedUntil is not { } from)
        {
            // The first evaluation judges nothing: baselines are built from the runs that end from now on.
            state.JudgedUntil = await store.NowAsync(CancellationToken.None) - settings.SettleLag;
            await record.WriteStateAsync();
            return [];
        }

        if (state.JudgingUntil is not { } until)
        {
            state.JudgingUntil = until = await store.NowAsync(CancellationToken.None) - settings.SettleLag;
            await record.WriteStateAsync();
        }

        var ended = until > from ? await store.EndedRunsAsync(from, state.JudgedRunId, until, MaxRunsPerEvaluation, CancellationToken.None) : [];

        // The keys of what this evaluation raises: where it started and where it ends, so that a repeat of it matches.
        var span = $"{from.UtcTicks.ToString(CultureInfo.InvariantCulture)}/{state.JudgedRunId}/{until.UtcTicks.ToString(CultureInfo.InvariantCulture)}";
        var raised = new List<(RaisedAlert, string)>();
        foreach (var type in ended.GroupBy(r => r.Run.WorkflowType))
        {
            if (!state.Types.TryGetValue(type.Key, out var baseline))
            {
                state.Types[type.Key] = baseline = new WorkflowBaseline();
            }

            raised.AddRange(AlertRules.Judge(baseline, type.Key, [.. type.Select(r => r.Run)], settings, until)
                .Select(a => (a, $"{span}/{a.WorkflowType}/{a.Rule}/{a.Subject}")));
        }

        (state.JudgedUntil, state.JudgedRunId) = ended.Count == MaxRunsPerEvaluation ? (ended[^1].EndedAt, ended[^1].Run.RunId) : (until, "");
        state.JudgingUntil = null;

        // Stored before the baselines move on: a crash in between repeats this evaluation, whose alerts are stored already.
        var stored = await store.AddAsync(raised, CancellationToken.None);
        await record.WriteStateAsync();
        foreach (var alert in stored)
        {
            LogRaised(logger, alert.Rule, alert.WorkflowType, alert.Message);
            SpineTelemetry.AlertsRaised.Add(1, new("spine.alert.rule", alert.Rule), new("spine.workflow.type", alert.WorkflowType));
        }

        return stored;
    }

    private async Task DeliverAsync(AlertOptions settings)
    {
        try
        {
            // Each undelivered alert once per pass (those raised meanwhile too), for at most a period.
            var budget = Stopwatch.StartNew();
            var tried = new HashSet<long>();
            while (budget.Elapsed < settings.EvaluationPeriod)
            {
                var batch = (await store.UndeliveredAsync(settings.MaxDeliveryAttempts, 100, CancellationToken.None)).Where(a => tried.Add(a.AlertId)).ToList();
                if (batch.Count == 0)
                {
                    return;
                }

                foreach (var alert in batch)
                {
                    var (attempts, error) = await webhook.DeliverAsync(alert, CancellationToken.None);
                    await store.RecordDeliveryAsync(alert.AlertId, attempts, error is null, error, CancellationToken.None);
                    if (error is not null)
                    {
                        LogDeliveryFailed(logger, alert.AlertId, alert.DeliveryAttempts + attempts, error);
                    }
                }
            }
        }
        catch (Exception e)
        {
            LogDeliveryStopped(logger, e);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Alert {Rule} for workflow type {WorkflowType}: {Message}")]
    private static partial void LogRaised(ILogger logger, string rule, string workflowType, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Alert {AlertId} could not be posted to the webhook ({Attempts} tries so far): {Error}")]
    private static partial void LogDeliveryFailed(ILogger logger, long alertId, int attempts, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Posting alerts to the webhook stopped; the next evaluation goes on")]
    private static partial void LogDeliveryStopped(ILogger logger, Exception exception);
}

/// <summary>Asks <see cref="AlertGrain"/> to evaluate every <see cref="AlertOptions.EvaluationPeriod"/>, from every silo.</summary>
internal sealed class AlertTicker(IGrainFactory grains, IOptions<AlertOptions> options, ILogger<AlertTicker> logger) : SiloTicker(logger)
{
    protected override TimeSpan Period => options.Value.EvaluationPeriod;

    protected override bool Enabled => options.Value.Enabled;

    protected override Task TickAsync() => grains.GetGrain<IAlertGrain>(0).TickAsync();
}
