namespace Spine.Timeouts;

/// <summary>How long a model call's attempt may take (<c>Spine:Timeouts</c>); a tool's is its definition's.</summary>
public sealed class TimeoutDefaults
{
    /// <summary>A model call's attempt, unless its chat client has its own below (default 100 s, as HttpClient's); null for no limit.</summary>
    public TimeSpan? Model { get; set; } = TimeSpan.FromSeconds(100);

    /// <summary>Per chat client key (<c>default</c> for the unkeyed one): its model calls' attempt timeout.</summary>
    public Dictionary<string, TimeSpan> ChatClients { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The timeout of a model call to <paramref name="clientKey"/> (null: the default client).</summary>
    public TimeSpan? ForModel(string? clientKey) =>
        ChatClients.TryGetValue(clientKey ?? "default", out var own) ? own : Model;

    /// <summary>Every value out of range, each message naming its setting under <paramref name="path"/>.</summary>
    public IEnumerable<string> Problems(string path)
    {
        if (Model is { } model && !InRange(model))
        {
            yield return $"{path}:Model is {model}: it must be positive and at most {TimeoutStage.MaxTimeout} (or empty for no limit).";
        }

        foreach (var (key, timeout) in ChatClients)
        {
            if (!InRange(timeout))
            {
                yield return $"{path}:ChatClients:{key} is {timeout}: it must be positive and at most {TimeoutStage.MaxTimeout}.";
            }
        }
    }

    private static bool InRange(TimeSpan timeout) => timeout > TimeSpan.Zero && timeout <= TimeoutStage.MaxTimeout;
}
