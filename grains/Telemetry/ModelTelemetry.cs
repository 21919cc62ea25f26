using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;

namespace Spine.Telemetry;

/// <summary>
/// Model calls as GenAI spans and metrics: each chat client wrapped once in Microsoft.Extensions.AI's
/// <see cref="OpenTelemetryChatClient"/> on the Spine source (operation, model, input and output tokens, per the
/// OpenTelemetry GenAI semantic conventions), without message content, which may quote what a tool returned.
/// </summary>
internal static class ModelTelemetry
{
    private static readonly ConditionalWeakTable<IChatClient, IChatClient> Wrapped = [];

    public static IChatClient Wrap(IChatClient client) =>
        client.GetService<OpenTelemetryChatClient>() is not null ? client : Wrapped.GetValue(client, static inner => new OpenTelemetryChatClient(inner, sourceName: SpineTelemetry.Name) { EnableSensitiveData = false });
}
