using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Spine.Errors;

namespace Spine.Workflows;

/// <summary>A registered workflow: type name, version and how to run it on JSON input.</summary>
public sealed class WorkflowRegistration
{
    internal WorkflowRegistration(string name, int version, Type workflowType, Type inputType,
        Func<IServiceProvider, IWorkflowContext, object?, Task<string>> invoke, bool escalateToOperator)
    {
        EscalateToOperator = escalateToOperator;
        Name = name;
        Version = version;
        WorkflowType = workflowType;
        InputType = inputType;
        Invoke = invoke;
    }

    /// <summary>The type name.</summary>
    public string Name { get; }

    /// <summary>The version.</summary>
    public int Version { get; }

    /// <summary>The workflow class.</summary>
    public Type WorkflowType { get; }

    /// <summary>The input type.</summary>
    public Type InputType { get; }

    /// <summary>Whether a step that exhausts its retries waits for an operator instead of failing the run.</summary>
    public bool EscalateToOperator { get; }

    internal Func<IServiceProvider, IWorkflowContext, object?, Task<string>> Invoke { get; }

    /// <summary>Deserialises the JSON input, with a typed error when it does not fit the input type.</summary>
    public object? ParseInput(string inputJson)
    {
        try
        {
            return JsonSerializer.Deserialize(inputJson, InputType, SpineJson.Options);
        }
        catch (JsonException e)
        {
            throw new InvalidPayloadException($"input of workflow '{Name}' v{Version}", e.Message);
        }
    }
}

/// <summary>Every workflow registered on this silo, by (type name, version).</summary>
public sealed class WorkflowRegistry
{
    private readonly Dictionary<string, SortedList<int, WorkflowRegistration>> _byName = new(StringComparer.Ordinal);

    /// <summary>Builds the registry from the registrations in the container.</summary>
    public WorkflowRegistry(IEnumerable<WorkflowRegistration> registrations)
    {
        ArgumentNullException.ThrowIfNull(registrations);
        foreach (var registration in registrations)
        {
            if (!_byName.TryGetValue(registration.Name, out var versions))
            {
                _byName[registration.Name] = versions = [];
            }

            if (!versions.TryAdd(registration.Version, registration))
            {
                throw new InvalidOperationException($"Workflow '{registration.Name}' version {registration.Version} is registered twice.");
            }
        }
    }

    /// <summary>The registration for a type and version (null: the newest).</summary>
    /// <exception cref="UnknownWorkflowException">Not registered.</exception>
    public WorkflowRegistration Resolve(string name, int? version)
    {
        if (!_byName.TryGetValue(name, out var versions) || versions.Count == 0)
        {
            throw new UnknownWorkflowException(name, version);
        }

        if (version is null)
        {
            return versions.Values[^1];
        }

        return versions.TryGetValue(version.Value, out var registration) ? registration : throw new UnknownWorkflowException(name, version);
    }

    /// <summary>All registrations.</summary>
    public IEnumerable<WorkflowRegistration> All => _byName.Values.SelectMany(v => v.Values);

    /// <summary>Creates the registration of a workflow class.</summary>
    public static WorkflowRegistration Create<TWorkflow, TInput, TOutput>(string name, int version, bool escalateToOperator = false)
        where TWorkflow : class, IWorkflow<TInput, TOutput>
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(version, 1);
        return new WorkflowRegistration(name, version, typeof(TWorkflow), typeof(TInput), async (services, context, input) =>
        {
            var workflow = ActivatorUtilities.GetServiceOrCreateInstance<TWorkflow>(services);
            var output = await workflow.RunAsync(context, (TInput)input!);
            return JsonSerializer.Serialize(output, SpineJson.Options);
        }, escalateToOperator);
    }
}

/// <summary>The JSON settings used for workflow inputs, outputs and step results.</summary>
public static class SpineJson
{
    /// <summary>Web defaults (camelCase, case-insensitive reads), compact, without HTML escaping (payloads are data, never markup).</summary>
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The Microsoft.Extensions.AI settings (polymorphic contents), compact, for journaled model responses.</summary>
    public static JsonSerializerOptions ModelOptions { get; } = new(Microsoft.Extensions.AI.AIJsonUtilities.DefaultOptions)
    {
        WriteIndented = false,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}
