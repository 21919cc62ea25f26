using System.Diagnostics;
using Spine.Errors;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Recovery;
using Spine.Tools;

namespace Spine.Telemetry;

/// <summary>
/// Attempt stage, outermost: one span per attempt of a step, tool call or model call, in the run's trace (its stored
/// context is the parent, so a run keeps one trace across reactivations and silos), tagged with the workflow, the
/// step, the tool, the attempt and its outcome class; and the attempt's duration and failure in the Spine meter.
/// A model call's own span (the GenAI conventions, from Microsoft.Extensions.AI) is a child of this one. With no
/// listener and no meter reader it passes straight through.
/// </summary>
internal sealed class TracingStage(ILocalSiloDetails silo, ToolRegistry tools, Secrets.SecretRedactor redactor, Budgets.CallCosts costs) : IAttemptStage
{
    private readonly string _silo = silo.SiloAddress.ToString();

    public int Order => StepStageOrder.Tracing;

    public Task<string> InvokeAsync(StepAttempt attempt, IStepRun run, AttemptHandler next) =>
        attempt.Call.Instant || !(SpineTelemetry.Source.HasListeners() || SpineTelemetry.AttemptDuration.Enabled || SpineTelemetry.AttemptsFailed.Enabled
            || SpineTelemetry.ModelTokens.Enabled || SpineTelemetry.CallCost.Enabled)
            ? next(attempt, run)
            : TraceAsync(attempt, run, next);

    private async Task<string> TraceAsync(StepAttempt attempt, IStepRun run, AttemptHandler next)
    {
        var call = attempt.Call;
        var kind = call.Kind.ToString();

        // A tool name is the model's to choose: only a registered one becomes a metric's tag value.
        var tool = call.Tool?.Name;
        var toolTag = tool is null ? null : tools.TryResolve(tool) is null ? "_unknown" : tool;
        var parent = run.Trace;
        if (parent == default)
        {
            // A run from before traces were recorded: its spans root themselves rather than join whatever called the run.
            Activity.Current = null;
        }

        using var activity = SpineTelemetry.Source.StartActivity($"{kind} {call.Name}", ActivityKind.Internal, parent);
        var started = Stopwatch.GetTimestamp();
        if (activity is not null)
        {
            activity.SetTag("spine.run.id", run.RunId);
            activity.SetTag("spine.silo", _silo);
            activity.SetTag("spine.workflow.type", run.WorkflowType);
            activity.SetTag("spine.workflow.version", run.WorkflowVersion);
            activity.SetTag("spine.step", call.Step);
            activity.SetTag("spine.step.name", call.Name);
            activity.SetTag("spine.step.kind", kind);
            activity.SetTag("spine.attempt", attempt.Number);
            activity.SetTag("spine.tool.name", tool);
        }

        string payload;
        try
        {
            payload = await next(attempt, run);
        }
        catch (Exception e)
        {
            // What the retry stage does not count as the attempt's failure (the activation stopping, the run's cancel,
            // the journal) is an interruption here too; the rest is classed as the retry stage classes it by default.
            var interrupted = run.Stopping.IsCancellationRequested
                || e is StorageUnavailableException or JournalConflictException or JournalTamperedException or RunCancelledException or CallCancelledException;
            var outcome = e is CallCancelledException or RunCancelledException ? ErrorClass.Cancelled.Name()
                : interrupted ? "interrupted"
                : ErrorClassifier.Classify(e).Name();
            activity?.SetTag("spine.outcome", outcome);
            activity?.SetTag("error.type", e.GetType().FullName);
            activity?.SetStatus(ActivityStatusCode.Error, redactor.Redact(e.Message));
            Record(kind, toolTag, outcome, started);
            if (!interrupted)
            {
                SpineTelemetry.AttemptsFailed.Add(1, new("spine.step.kind", kind), new("spine.error.class", outcome));
            }

            throw;
        }

        activity?.SetTag("spine.outcome", "ok");
        Record(kind, toolTag, "ok", started);
        try
        {
            RecordSpend(activity, call, run, toolTag, payload);
        }
        catch (Exception)
        {
            // Telemetry never fails a call that succeeded (a failure here would be retried as the call's).
        }

        return payload;
    }

    /// <summary>
    /// What a successful model or priced tool call cost, at the prices the budget settles by (the same calculation): on
    /// the attempt's span (<c>spine.cost</c>, and a model's tokens) and in the token and cost counters.
    /// </summary>
    private void RecordSpend(Activity? activity, StepCall call, IStepRun run, string? toolTag, string payload)
    {
        var account = run.AccountId ?? "none";
        if (call.Kind == JournalKind.Model && call.Model is { } model)
        {
            var spent = costs.Used(payload, model.Messages, call.ChatClient, model.Options);

            var modelId = costs.ModelOf(call.ChatClient, model.Options) ?? call.ChatClient ?? "default";
            activity?.SetTag("spine.cost", (double)spent.Cost);
            activity?.SetTag("gen_ai.request.model", modelId);
            activity?.SetTag("gen_ai.usage.input_tokens", spent.InputTokens);
            activity?.SetTag("gen_ai.usage.output_tokens", spent.OutputTokens);
            var tags = new TagList { { "spine.account", account }, { "spine.workflow.type", run.WorkflowType }, { "gen_ai.request.model", modelId } };
            var input = tags;
            input.Add("gen_ai.token.type", "input");
            var output = tags;
            output.Add("gen_ai.token.type", "output");
            SpineTelemetry.ModelTokens.Add(spent.InputTokens, input);
            SpineTelemetry.ModelTokens.Add(spent.OutputTokens, output);
            tags.Add("spine.step.kind", "Model");
            SpineTelemetry.CallCost.Add((double)spent.Cost, tags);
        }
        else if (call.Kind == JournalKind.Tool && call.Tool is { } toolCall && toolTag is not (null or "_unknown")
                 && Budgets.BudgetStage.CostOf(tools, toolCall) is > 0 and var cost)
        {
            activity?.SetTag("spine.cost", (double)cost);
            SpineTelemetry.CallCost.Add((double)cost, new TagList
            {
                { "spine.account", account }, { "spine.workflow.type", run.WorkflowType }, { "spine.step.kind", "Tool" }, { "spine.tool.name", toolTag },
            });
        }
    }

    private static void Record(string kind, string? tool, string outcome, long started) =>
        SpineTelemetry.AttemptDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds,
            new("spine.step.kind", kind), new("spine.tool.name", tool), new("spine.outcome", outcome));
}
