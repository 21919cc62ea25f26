using Microsoft.Extensions.DependencyInjection;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Hosting;

/// <summary>
/// Builds the tool and workflow registries and compiles the run policies while the silo starts, so that a bad
/// tool definition (schema, version, retry, breaker or timeout policy), workflow registration, policy rule or budget setting
/// stops the silo with a message naming it, and so does a tool contract changed under its version, a breaking change
/// against a version an earlier deploy registered, or a version in-flight runs pinned that this silo lacks (<see cref="ToolCatalog"/>), instead of failing the first run that uses it. Resolved lazily: tools may depend on services (the
/// database) whose options are validated first.
/// </summary>
internal sealed class RegistryStartupCheck(IServiceProvider services) : ILifecycleParticipant<ISiloLifecycle>
{
    public void Participate(ISiloLifecycle observer) =>
        observer.Subscribe(
            nameof(RegistryStartupCheck),
            ServiceLifecycleStage.RuntimeInitialize,
            async cancellation =>
            {
                var tools = services.GetRequiredService<ToolRegistry>();
                services.GetRequiredService<WorkflowRegistry>();
                services.GetRequiredService<Policies.PolicyEngine>();
                services.GetRequiredService<RateLimits.RateLimitRegistry>();
                var costs = services.GetRequiredService<Budgets.CallCosts>();
                if (services.GetRequiredService<Microsoft.Extensions.Options.IOptions<Slo.SloOptions>>().Value.Problems().ToList() is { Count: > 0 } slo)
                {
                    throw new InvalidOperationException("Invalid reliability targets: " + string.Join(" ", slo));
                }


                // Not awaited: the silo need not wait for it, only a run's first counted model call might.
                _ = Task.Run(costs.Warm, CancellationToken.None);
                await services.GetRequiredService<ToolCatalog>().CheckAsync(cancellation);
                await Secrets.SecretStartupCheck.RunAsync(tools, services.GetRequiredService<Secrets.ISecretProvider>(), cancellation);
            });
}
