using System.ClientModel;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.AI;
using OpenAI;
using Spine.Hosting;

namespace Spine.Silo.Demo;

/// <summary>Registers the demo tools, workflows and the chat client.</summary>
public static class DemoServiceCollectionExtensions
{
    /// <summary>
    /// Adds the demo tools (calculator, text_stats, notes_append, ledger_apply), the <c>ledger</c> and
    /// <c>chaos</c> workflows and an
    /// <see cref="IChatClient"/>: an OpenAI-compatible endpoint when <c>Model:Endpoint</c> is set, else the
    /// offline <see cref="ScriptedChatClient"/>.
    /// </summary>
    public static IServiceCollection AddSpineDemo(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddSpineTool<CalculatorTool>();
        services.AddSpineTool<TextStatsTool>();
        services.AddSpineTool<NotesTool>();
        services.AddSpineTool<LedgerApplyTool>();
        services.AddSpineWorkflow<LedgerWorkflow, LedgerInput, LedgerOutput>();
        services.AddSpineWorkflow<ChaosWorkflow, ChaosInput, ChaosOutput>();
        services.AddSpineWorkflow<PayoutWorkflow, PayoutInput, PayoutOutput>();

        var endpoint = configuration["Model:Endpoint"];
        if (string.IsNullOrWhiteSpace(endpoint))
        {
            services.AddSingleton<IChatClient, ScriptedChatClient>();
        }
        else
        {
            var model = configuration["Model:Name"] is { Length: > 0 } name ? name : "gpt-4o-mini";
            var key = configuration["Model:ApiKey"] is { Length: > 0 } apiKey ? apiKey : "unused";
            services.AddSingleton<IChatClient>(_ => new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(endpoint) })
                .GetChatClient(model)
                .AsIChatClient());
        }

        return services;
    }
}
