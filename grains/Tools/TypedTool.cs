using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using Microsoft.Extensions.AI;
using Spine.Breakers;
using Spine.Errors;
using Spine.Recovery;
using Spine.Workflows;

namespace Spine.Tools;

/// <summary>What a typed tool's contract says besides its schemas, which are generated from its method.</summary>
public sealed class TypedToolOptions
{
    /// <summary>The name workflows and models call it by.</summary>
    public required string Name { get; init; }

    /// <summary>A semantic version.</summary>
    public required string Version { get; init; }

    /// <summary>What it does, shown to the model.</summary>
    public required string Description { get; init; }

    /// <summary>The effect class. Default <see cref="ToolEffect.SideEffecting"/>.</summary>
    public ToolEffect Effect { get; init; } = ToolEffect.SideEffecting;

    /// <summary>See <see cref="ToolDefinition.Retry"/>.</summary>
    public RetryPolicy? Retry { get; init; }

    /// <summary>See <see cref="ToolDefinition.Breaker"/>.</summary>
    public BreakerPolicy? Breaker { get; init; }

    /// <summary>See <see cref="ToolDefinition.Timeout"/>.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>See <see cref="ToolDefinition.ClassifyError"/>.</summary>
    public Func<Exception, ErrorClass?>? ClassifyError { get; init; }

    /// <summary>See <see cref="ToolDefinition.CostPerCall"/>.</summary>
    public decimal? CostPerCall { get; init; }

    /// <summary>See <see cref="ToolDefinition.Approval"/>.</summary>
    public Approvals.ToolApproval? Approval { get; init; }

    /// <summary>See <see cref="ToolDefinition.Secrets"/>.</summary>
    public IReadOnlyList<string> Secrets { get; init; } = [];

    /// <summary>Whether the arguments may carry properties the method has no parameter for (default false: they are refused).</summary>
    public bool AllowAdditionalProperties { get; init; }
}

/// <summary>
/// A tool that is a C# method: its input schema is generated from the method's parameters and its output schema from
/// its return type (by Microsoft.Extensions.AI's <see cref="AIFunctionFactory"/>, which reads <c>[Description]</c> and
/// the DataAnnotations limits such as <c>[Range]</c> and <c>[StringLength]</c>), and the arguments bind to the
/// parameters. A parameter of type <see cref="ToolContext"/> receives the call's context and a
/// <see cref="CancellationToken"/> its token; neither is in the schema. Names are camelCase in JSON.
/// </summary>
/// <remarks>
/// Derive and override <see cref="Contract"/> and <see cref="Method"/> (a tool with services of its own), or use
/// <see cref="FromMethod"/> for a delegate. The schemas are generated when the silo builds its tool registry, so a
/// method the factory cannot describe stops the silo naming the tool.
/// </remarks>
public abstract class TypedTool : ITool
{
    private static readonly JsonSerializerOptions Json = CreateJsonOptions();
    private readonly Lazy<(ToolDefinition Definition, AIFunction Function)> _built;

    /// <summary>Creates the tool; its contract is built on first use.</summary>
    protected TypedTool() => _built = new(Build);

    /// <summary>The contract besides the schemas.</summary>
    protected abstract TypedToolOptions Contract { get; }

    /// <summary>The method the tool runs.</summary>
    protected abstract Delegate Method { get; }

    /// <inheritdoc />
    public ToolDefinition Definition => _built.Value.Definition;

    /// <summary>A tool that runs <paramref name="method"/> under <paramref name="options"/>.</summary>
    public static ITool FromMethod(Delegate method, TypedToolOptions options)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(options);
        return new DelegateTool(method, options);
    }

    /// <inheritdoc />
    public async Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var values = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (arguments.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in arguments.EnumerateObject())
            {
                values[property.Name] = property.Value;
            }
        }

        var call = new AIFunctionArguments(values) { Context = new Dictionary<object, object?> { [typeof(ToolContext)] = context } };
        object? result;
        try
        {
            result = await _built.Value.Function.InvokeAsync(call, context.CancellationToken);
        }
        catch (JsonException e)
        {
            // A value the schema let through that does not bind to its parameter (3.0 for an int, say): the same
            // arguments fail the same way every time.
            throw new TerminalException($"Tool '{Definition.Name}' {Definition.Version}: the arguments do not bind to its parameters: {e.Message}", e);
        }
        return result switch
        {
            JsonElement element => element,
            null => JsonSerializer.SerializeToElement<object?>(null, Json),
            _ => JsonSerializer.SerializeToElement(result, result.GetType(), Json),
        };
    }

    private (ToolDefinition, AIFunction) Build()
    {
        var contract = Contract;
        AIFunction function;
        try
        {
            function = AIFunctionFactory.Create(Method, new AIFunctionFactoryOptions
            {
                Name = contract.Name,
                Description = contract.Description,
                SerializerOptions = Json,
                ConfigureParameterBinding = parameter => parameter.ParameterType == typeof(ToolContext)
                    ? new AIFunctionFactoryOptions.ParameterBindingOptions { ExcludeFromSchema = true, BindParameter = (_, a) => a.Context![typeof(ToolContext)] }
                    : default,
            });
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or InvalidOperationException)
        {
            throw new InvalidOperationException($"Tool '{contract.Name}' {contract.Version}: its method cannot be described as a JSON Schema: {e.Message}", e);
        }

        // The tool's description is the definition's, not the arguments schema's (AIFunctionFactory puts it in both).
        var input = JsonNode.Parse(function.JsonSchema.GetRawText())!.AsObject();
        input.Remove("title");
        input.Remove("description");
        if (!contract.AllowAdditionalProperties)
        {
            input["additionalProperties"] = false;
        }

        var definition = new ToolDefinition
        {
            Name = contract.Name,
            Version = contract.Version,
            Description = contract.Description,
            InputSchema = input.ToJsonString(),
            OutputSchema = function.ReturnJsonSchema is { } output ? output.GetRawText() : "{}",
            Effect = contract.Effect,
            Retry = contract.Retry,
            Breaker = contract.Breaker,
            Timeout = contract.Timeout,
            ClassifyError = contract.ClassifyError,
            CostPerCall = contract.CostPerCall,
            Approval = contract.Approval,
            Secrets = contract.Secrets,
        };
        return (definition, function);
    }

    private static JsonSerializerOptions CreateJsonOptions()
    {
        var options = new JsonSerializerOptions(SpineJson.Options) { TypeInfoResolver = new DefaultJsonTypeInfoResolver() };
        options.MakeReadOnly();
        return options;
    }

    private sealed class DelegateTool(Delegate method, TypedToolOptions options) : TypedTool
    {
        protected override TypedToolOptions Contract => options;

        protected override Delegate Method => method;
    }
}
