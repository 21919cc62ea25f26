using System.Text.Json;
using Microsoft.Extensions.AI;
using Spine.Errors;
using Spine.Policies;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Agents;

/// <summary>The input of <see cref="AgentWorkflow"/>.</summary>
/// <param name="Prompt">The user's request.</param>
/// <param name="SystemPrompt">Instructions for the model.</param>
/// <param name="Tools">The tools the model may call (newest versions). An agent gets only the tools it names: none when null, never every registered tool.</param>
/// <param name="MaxTurns">The most model turns before the run gives up. Default 8.</param>
/// <param name="ChatClient">A keyed chat client to use; null for the silo's default.</param>
public sealed record AgentInput(string Prompt, string? SystemPrompt = null, IReadOnlyList<string>? Tools = null, int MaxTurns = 8, string? ChatClient = null);

/// <summary>The result of <see cref="AgentWorkflow"/>.</summary>
/// <param name="Answer">The model's final text, or null when it ran out of turns.</param>
/// <param name="Turns">Model turns taken.</param>
/// <param name="ToolCalls">Tool calls made, in order, with their outcome.</param>
/// <param name="InputTokens">Input tokens over all turns, as the model reported them.</param>
/// <param name="OutputTokens">Output tokens over all turns.</param>
public sealed record AgentOutput(string? Answer, int Turns, IReadOnlyList<AgentToolCall> ToolCalls, long InputTokens, long OutputTokens);

/// <summary>One tool call of an agent run.</summary>
/// <param name="Tool">The tool name the model asked for.</param>
/// <param name="Ok">False when the call was rejected (unknown tool, arguments not matching the schema) or failed.</param>
/// <param name="Result">The tool output, or the error given back to the model.</param>
public sealed record AgentToolCall(string Tool, bool Ok, JsonElement Result);

/// <summary>
/// The durable agent loop: a model turn, then the tool calls the model asks for (in parallel), until the
/// model answers in text. Every model turn and every tool call is one journaled step, so a crash mid-loop resumes at
/// the first unrecorded turn or call without asking the model again or repeating a tool's side effect.
/// A malformed or unknown tool call is given back to the model as an error result, as a model expects.
/// The model is shown only the tools the run's policy permits; a call to another tool, or one the policy denies
/// (arguments over a limit, too many calls), is answered "not permitted", and after <see cref="PolicyEngine.MaxDenials"/>
/// such answers the run fails with <c>policy_denied</c>.
/// </summary>
[Workflow("agent")]
public sealed class AgentWorkflow(ToolRegistry tools, PolicyEngine policies) : IWorkflow<AgentInput, AgentOutput>
{
    /// <inheritdoc />
    public async Task<AgentOutput> RunAsync(IWorkflowContext context, AgentInput input)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(input);
        var permitted = policies.PermittedTools(context.WorkflowType, context.StartedBy, input.Tools ?? []);
        var offered = new StepOptions { AllowedTools = permitted.ToHashSet(StringComparer.Ordinal) };
        var denials = 0;

        var history = new List<ChatMessage>();
        if (input.SystemPrompt is { Length: > 0 } system)
        {
            history.Add(new ChatMessage(ChatRole.System, system));
        }

        history.Add(new ChatMessage(ChatRole.User, input.Prompt));
        var calls = new List<AgentToolCall>();
        long inputTokens = 0, outputTokens = 0;
        for (var turn = 1; turn <= Math.Max(1, input.MaxTurns); turn++)
        {
            // Each tool as the version this run calls: the one it pinned at its first call, else the one it would pin.
            var options = new ChatOptions { Tools = permitted.Select(name => (AITool)tools.Resolve(name, context.ToolVersion(name)).ToDeclaration()).ToList() };
            var response = await context.CallModelAsync(history, options, input.ChatClient);
            inputTokens += response.Usage?.InputTokenCount ?? 0;
            outputTokens += response.Usage?.OutputTokenCount ?? 0;
            history.AddRange(response.Messages);

            var requested = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().ToList();
            if (requested.Count == 0)
            {
                return new AgentOutput(response.Text, turn, calls, inputTokens, outputTokens);
            }

            // A turn's tool calls run in parallel. They are issued in the model's order, so each gets the same
            // step number on every execution, whichever finishes first.
            var outcomes = await Task.WhenAll(requested.Select(call => CallAsync(context, call, offered)));
            var results = new List<AIContent>();
            for (var i = 0; i < requested.Count; i++)
            {
                if (outcomes[i].Denied is { } denied && ++denials >= policies.MaxDenials)
                {
                    // The model keeps asking for what it may not do: the run stops here.
                    throw denied;
                }

                calls.Add(new AgentToolCall(requested[i].Name, outcomes[i].Ok, outcomes[i].Result));
                results.Add(new FunctionResultContent(requested[i].CallId, outcomes[i].Result));
            }

            history.Add(new ChatMessage(ChatRole.Tool, results));
        }

        return new AgentOutput(null, input.MaxTurns, calls, inputTokens, outputTokens);
    }

    private static async Task<(bool Ok, JsonElement Result, PolicyDeniedException? Denied)> CallAsync(IWorkflowContext context, FunctionCallContent call, StepOptions offered)
    {
        if (call.Exception is not null)
        {
            // The model's arguments were not parseable JSON: tell the model, the model turn that produced it is journaled.
            return (false, Error("invalid_payload", $"The arguments for '{call.Name}' are not valid JSON: {call.Exception.Message}"), null);
        }

        var (arguments, confidence) = Proposed(call);
        try
        {
            return (true, await context.CallToolAsync(call.Name, arguments, options: offered with { Confidence = confidence }), null);
        }
        catch (ToolCallRejectedException e)
        {
            // A human (or the approval's deadline) said no: the model hears it, and may do something else.
            return (false, Error(e.Kind, e.Message), null);
        }
        catch (PolicyDeniedException e)
        {
            // Journaled as a denial with its rule; the model hears only that it may not.
            return (false, Error("not_permitted", $"The tool '{call.Name}' is not permitted here: {e.Reason}"), e);
        }
        catch (StepFailedException e) when (e.ErrorKind is "unknown_tool" or "schema_validation" or "invalid_payload" or "payload_too_large")
        {
            return (false, Error(e.ErrorKind, e.ErrorMessage), null);
        }
    }

    /// <summary>
    /// The call's arguments, and the confidence the model stated for it: a <c>confidence</c> (0..1) among the call's
    /// additional properties, or a <c>_confidence</c> argument (structured output), which is taken out of the arguments.
    /// </summary>
    internal static (JsonElement Arguments, double? Confidence) Proposed(FunctionCallContent call)
    {
        var arguments = new Dictionary<string, object?>(call.Arguments ?? new Dictionary<string, object?>(), StringComparer.Ordinal);
        double? confidence = null;
        if (call.AdditionalProperties?.TryGetValue("confidence", out var stated) == true)
        {
            confidence = ReadConfidence(stated);
        }

        if (arguments.Remove(ConfidenceArgument, out var argument))
        {
            confidence ??= ReadConfidence(argument);
        }

        return (JsonSerializer.SerializeToElement(arguments, AIJsonUtilities.DefaultOptions), confidence);
    }

    /// <summary>The argument a model may state its confidence in (taken out before the tool sees the arguments).</summary>
    public const string ConfidenceArgument = "_confidence";

    private static double? ReadConfidence(object? value)
    {
        var number = value switch
        {
            double d => d,
            float f => f,
            decimal m => (double)m,
            int i => i,
            long l => l,
            JsonElement { ValueKind: JsonValueKind.Number } e => e.GetDouble(),
            string text when double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var parsed) => parsed,
            _ => (double?)null,
        };

        // Out of range is no confidence at all: the gate treats it as none.
        return number is >= 0 and <= 1 ? number : null;
    }

    private static JsonElement Error(string kind, string message) =>
        JsonSerializer.SerializeToElement(new { error = kind, message }, SpineJson.Options);
}
