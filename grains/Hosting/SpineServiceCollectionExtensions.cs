using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Spine.Breakers;
using Spine.Compensation;
using Spine.Escalation;
using Spine.Journal;
using Spine.Pipeline;
using Spine.Recovery;
using Spine.Replay;
using Spine.Runs;
using Spine.Storage;
using Spine.Timeouts;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Hosting;

/// <summary>Registration of the Spine runtime, workflows and tools.</summary>
public static class SpineServiceCollectionExtensions
{
    /// <summary>
    /// Adds the runtime services the run grains need (journal writer, registries, database) and the start-up
    /// checks of <see cref="SpineOptions"/> and of every registered tool and workflow. The options themselves are bound
    /// by <see cref="SpineSiloBuilderExtensions.AddSpine"/>.
    /// </summary>
    internal static IServiceCollection AddSpineRuntime(this IServiceCollection services)
    {
        services.AddOptions<SpineOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<SpineOptions>, SpineOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<SpineDatabase>();
        services.TryAddSingleton<StorageRetry>();
        services.TryAddSingleton<JournalWriter>();
        services.TryAddSingleton<JournalStore>();
        services.TryAddSingleton<Audit.AuditKeyRing>();
        services.TryAddSingleton<Audit.JournalAudit>();
        services.TryAddSingleton<WorkflowRegistry>();
        services.AddOptions<Slo.SloOptions>();
        services.TryAddSingleton<Slo.SloCalculator>();
        services.TryAddSingleton<Slo.CostCalculator>();
        services.AddOptions<Alerts.AlertOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<Alerts.AlertOptions>, Alerts.AlertOptionsValidator>());
        services.TryAddSingleton<Alerts.AlertStore>();
        services.TryAddSingleton<Alerts.AlertWebhook>();
        services.AddOptions<Mcp.McpOptions>();
        services.TryAddSingleton<Mcp.McpToolSource>();

        // The registered tools and the MCP servers' (read while the silo starts, before anything resolves the registry).
        services.TryAddSingleton(sp => new ToolRegistry(sp.GetServices<ITool>().Concat(sp.GetRequiredService<Mcp.McpToolSource>().Tools)));
        services.AddOptions<Policies.PolicyOptions>();
        services.AddOptions<Budgets.BudgetOptions>();
        services.TryAddSingleton<Budgets.CallCosts>();
        services.TryAddSingleton<Budgets.BudgetCalls>();
        services.TryAddSingleton<Budgets.BudgetLedger>();
        services.TryAddSingleton<Policies.PolicyEngine>();
        services.TryAddSingleton<ToolCatalog>();
        services.TryAddSingleton<Approvals.ToolApprovals>();
        services.AddOptions<Secrets.SecretOptions>();
        services.TryAddSingleton<Secrets.ISecretProvider, Secrets.DefaultSecretProvider>();
        services.TryAddSingleton<Secrets.SecretRedactor>();
        services.TryAddSingleton<Secrets.SecretfulInvoker>();
        services.TryAddSingleton<CircuitBreakerCache>();
        services.AddOptions<RateLimits.RateLimitOptions>();
        services.TryAddSingleton<RateLimits.RateLimitRegistry>();
        services.TryAddSingleton<RateLimits.RateLimitLeases>();
        services.AddStepPipeline();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, Mcp.McpStartup>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, RegistryStartupCheck>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, RunRecoveryStarter>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, Telemetry.RunGaugeStarter>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, Alerts.AlertTicker>();
        return services;
    }

    /// <summary>
    /// The built-in stages of the step pipeline, in their places (<see cref="StepStageOrder"/>). A control
    /// adds itself by registering one more <see cref="IStepStage"/> or <see cref="IAttemptStage"/>.
    /// </summary>
    private static void AddStepPipeline(this IServiceCollection services)
    {
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStepStage, ReplayStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStepStage, Policies.PolicyStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStepStage, Budgets.BudgetStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IRunHook, Budgets.BudgetRunHook>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStepStage, LiveCallStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStepStage, CompensationStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStepStage, JournalStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStepStage, EscalationStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStepStage, RetryStage>(_ => new RetryStage()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAttemptStage, Telemetry.TracingStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAttemptStage, Budgets.BudgetRenewalStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAttemptStage, ToolContractStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAttemptStage, RateLimits.RateLimitStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAttemptStage, BreakerStage>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAttemptStage, TimeoutStage>());
        services.TryAddSingleton(services => new StepPipeline(services.GetServices<IStepStage>(), services.GetServices<IAttemptStage>(), services.GetServices<IRunHook>()));
    }

    /// <summary>Adds a run policy rule in code, next to those of <c>Spine:Policies</c> (checked at start-up like them).</summary>
    public static IServiceCollection AddSpinePolicy(this IServiceCollection services, Policies.PolicyRule rule)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(rule);
        services.Configure<Policies.PolicyOptions>(o => o.Rules.Add(rule));
        return services;
    }

    /// <summary>Registers a workflow class under the name and version of its <see cref="WorkflowAttribute"/>.</summary>
    public static IServiceCollection AddSpineWorkflow<TWorkflow, TInput, TOutput>(this IServiceCollection services)
        where TWorkflow : class, IWorkflow<TInput, TOutput>
    {
        var attribute = typeof(TWorkflow).GetCustomAttributes(typeof(WorkflowAttribute), false).OfType<WorkflowAttribute>().FirstOrDefault()
            ?? throw new InvalidOperationException($"{typeof(TWorkflow).Name} has no [Workflow(\"name\")] attribute.");
        return services.AddSpineWorkflow<TWorkflow, TInput, TOutput>(attribute.Name, attribute.Version, attribute.EscalateToOperator);
    }

    /// <summary>Registers a workflow class under an explicit name and version.</summary>
    public static IServiceCollection AddSpineWorkflow<TWorkflow, TInput, TOutput>(this IServiceCollection services, string name, int version, bool escalateToOperator = false)
        where TWorkflow : class, IWorkflow<TInput, TOutput>
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddTransient<TWorkflow>();
        services.AddSingleton(WorkflowRegistry.Create<TWorkflow, TInput, TOutput>(name, version, escalateToOperator));
        return services;
    }

    /// <summary>Registers a tool.</summary>
    public static IServiceCollection AddSpineTool<TTool>(this IServiceCollection services)
        where TTool : class, ITool
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddSingleton<ITool, TTool>();
        return services;
    }

    /// <summary>
    /// Registers a tool that is a C# method or delegate (see <see cref="TypedTool"/>): its schemas are generated from
    /// its parameters and return type, and its arguments bind to its parameters.
    /// </summary>
    public static IServiceCollection AddSpineTool(this IServiceCollection services, Delegate method, TypedToolOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddSingleton(TypedTool.FromMethod(method, options));
        return services;
    }

    /// <summary>Reads the validated options (fails fast with the setting's name).</summary>
    public static SpineOptions GetSpineOptions(this IServiceProvider services) =>
        services.GetRequiredService<IOptions<SpineOptions>>().Value;
}
