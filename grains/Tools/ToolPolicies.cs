namespace Spine.Tools;

/// <summary>The checks of the retry, breaker and timeout policies a tool's <see cref="ToolDefinition"/> carries.</summary>
internal static class ToolPolicies
{
    /// <summary>Every policy value out of range, each message naming the tool and the setting.</summary>
    public static IEnumerable<string> Problems(ToolDefinition definition)
    {
        var owner = $"Tool '{definition.Name}' {definition.Version}";
        foreach (var problem in definition.Retry?.Problems(owner + " Retry") ?? [])
        {
            yield return problem;
        }

        foreach (var problem in definition.Breaker?.Problems(owner + " Breaker") ?? [])
        {
            yield return problem;
        }

        foreach (var name in definition.Secrets ?? [])
        {
            if (Secrets.SecretNames.Problem(name) is { } problem)
            {
                yield return $"{owner} Secrets: {problem}.";
            }
        }

        foreach (var twice in (definition.Secrets ?? []).GroupBy(n => n, StringComparer.Ordinal).Where(g => g.Count() > 1))
        {
            yield return $"{owner} Secrets: '{twice.Key}' is declared twice.";
        }

        foreach (var problem in definition.Approval?.Problems(owner + " Approval") ?? [])
        {
            yield return problem;
        }

        if (definition.CostPerCall is < 0)
        {
            yield return $"{owner} CostPerCall is {definition.CostPerCall}: it must not be negative.";
        }

        if (definition.Timeout <= TimeSpan.Zero || definition.Timeout > Timeouts.TimeoutStage.MaxTimeout)
        {
            yield return $"{owner} Timeout is {definition.Timeout}: it must be positive and at most {Timeouts.TimeoutStage.MaxTimeout} (or null for no limit).";
        }
    }
}
