using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Spine.Tools;

namespace Spine.RateLimits;

/// <summary>One configured limit, compiled: what it limits, in which unit, at which rate.</summary>
/// <param name="Name">The limit's name: the rule's, and <c>/requests</c> or <c>/tokens</c>.</param>
/// <param name="Target"><c>tool</c> or <c>chat</c>.</param>
/// <param name="Subject">The tool's name or the chat client's key.</param>
/// <param name="Tokens">Whether a permit is a token (a model call takes its worst case) rather than a request.</param>
/// <param name="PerAccount">Whether each account has a limit of its own.</param>
/// <param name="Spec">The rate and capacity.</param>
/// <param name="Prefetch">How many request permits a silo leases beyond its waiting calls.</param>
internal sealed record RateLimit(string Name, string Target, string Subject, bool Tokens, bool PerAccount, RateSpec Spec, int Prefetch)
{
    /// <summary>The key of the limit's grain for a run of <paramref name="account"/>.</summary>
    public string KeyFor(string? account) => PerAccount ? $"{Name}|{account ?? "-"}" : Name;

    public string Unit => Tokens ? "tokens" : "requests";
}

/// <summary>
/// The rate limits of <c>Spine:RateLimits</c>, checked when the silo starts (an unknown tool or chat client, or a
/// rate out of range, stops it with the setting's name) and looked up by tool and chat client.
/// </summary>
public sealed class RateLimitRegistry
{
    private readonly Dictionary<string, RateLimit[]> _byTool;
    private readonly Dictionary<string, RateLimit[]> _byChat;

    /// <summary>Compiles the limits.</summary>
    /// <exception cref="InvalidOperationException">A setting is out of range, naming it.</exception>
    public RateLimitRegistry(IOptions<RateLimitOptions> options, ToolRegistry tools, IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(tools);
        Options = options.Value;
        var problems = Problems(Options, name => tools.TryResolve(name) is not null,
            key => (key == "default" ? services.GetService<IChatClient>() : services.GetKeyedService<IChatClient>(key)) is not null).ToList();
        if (problems.Count > 0)
        {
            throw new InvalidOperationException("Spine:RateLimits is not valid: " + string.Join(" ", problems));
        }

        All = Options.Limits.SelectMany(Compile).ToList();
        _byTool = All.Where(l => l.Target == "tool").GroupBy(l => l.Subject, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.ToArray(), StringComparer.Ordinal);
        _byChat = All.Where(l => l.Target == "chat").GroupBy(l => l.Subject, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.ToArray(), StringComparer.Ordinal);
    }

    /// <summary>The settings.</summary>
    public RateLimitOptions Options { get; }

    /// <summary>Every limit, in configuration order.</summary>
    internal IReadOnlyList<RateLimit> All { get; }

    /// <summary>The limits a call of <paramref name="tool"/> takes a permit of.</summary>
    internal IReadOnlyList<RateLimit> ForTool(string tool) => _byTool.GetValueOrDefault(tool) ?? [];

    /// <summary>The limits a call of the chat client <paramref name="key"/> (null: the unkeyed one) takes a permit of.</summary>
    internal IReadOnlyList<RateLimit> ForChat(string? key) => _byChat.GetValueOrDefault(key ?? "default") ?? [];

    /// <summary>Every setting out of range, each naming its setting.</summary>
    internal static IEnumerable<string> Problems(RateLimitOptions options, Func<string, bool> toolExists, Func<string, bool> chatClientExists)
    {
        const string Section = "Spine:RateLimits";
        if (options.MaxInMemoryWait < TimeSpan.Zero || options.MaxInMemoryWait > TimeSpan.FromHours(1))
        {
            yield return $"{Section}:MaxInMemoryWait must be between 0 and 1 hour (it is {options.MaxInMemoryWait}).";
        }

        if (double.IsNaN(options.Prefetch) || options.Prefetch is < 0 or > 1)
        {
            yield return $"{Section}:Prefetch must be between 0 and 1 (a share of a second's rate; it is {options.Prefetch}).";
        }

        if (options.DefaultRetryAfter <= TimeSpan.Zero)
        {
            yield return $"{Section}:DefaultRetryAfter must be positive (it is {options.DefaultRetryAfter}).";
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.Limits.Count; i++)
        {
            var rule = options.Limits[i];
            var at = $"{Section}:Limits:{i}";
            if (rule is null)
            {
                yield return $"{at} is empty.";
                continue;
            }

            if ((rule.Tool is null) == (rule.ChatClient is null))
            {
                yield return $"{at} must name exactly one of Tool and ChatClient.";
                continue;
            }

            if (rule.Tool is { } tool && !toolExists(tool))
            {
                yield return $"{at}:Tool names the tool '{tool}', which is not registered.";
            }

            if (rule.ChatClient is { } client && !chatClientExists(client))
            {
                yield return $"{at}:ChatClient names the chat client '{client}', which is not registered ({(client == "default" ? "AddChatClient" : $"AddKeyedSingleton<IChatClient>(\"{client}\", ...)")}).";
            }

            if (!names.Add(NameOf(rule)))
            {
                yield return $"{at}:Name '{NameOf(rule)}' is used by an earlier limit; give each limit its own name.";
            }

            if (rule.Requests is null && rule.TokensPerMinute is null)
            {
                yield return $"{at} limits nothing: set Requests (with Per) or, for a chat client, TokensPerMinute.";
            }

            if (rule.Requests is <= 0)
            {
                yield return $"{at}:Requests must be positive (it is {rule.Requests}).";
            }

            if (rule.Per <= TimeSpan.Zero || rule.Per > TimeSpan.FromDays(1))
            {
                yield return $"{at}:Per must be between 0 and 1 day (it is {rule.Per}).";
            }

            if (rule.Burst < 1)
            {
                yield return $"{at}:Burst must be at least 1 (it is {rule.Burst}).";
            }

            if (rule.TokensPerMinute is not null && rule.Tool is not null)
            {
                yield return $"{at}:TokensPerMinute applies to chat clients only; tool '{rule.Tool}' has no tokens.";
            }

            if (rule.TokensPerMinute is <= 0)
            {
                yield return $"{at}:TokensPerMinute must be positive (it is {rule.TokensPerMinute}).";
            }

            if (rule.TokenBurst is < 1)
            {
                yield return $"{at}:TokenBurst must be at least 1 (it is {rule.TokenBurst}).";
            }
        }
    }

    private static string NameOf(RateLimitRule rule) =>
        rule.Name ?? (rule.Tool is { } tool ? $"tool:{tool}" : $"chat:{rule.ChatClient}") + (rule.PerAccount ? ":per-account" : "");

    private IEnumerable<RateLimit> Compile(RateLimitRule rule)
    {
        var name = NameOf(rule);
        var (target, subject) = rule.Tool is { } tool ? ("tool", tool) : ("chat", rule.ChatClient!);
        if (rule.Requests is { } requests)
        {
            var perSecond = requests / rule.Per.TotalSeconds;
            var prefetch = (int)Math.Min(256, Math.Floor(perSecond * Options.Prefetch));
            yield return new RateLimit(name + "/requests", target, subject, false, rule.PerAccount, new RateSpec(perSecond, rule.Burst), prefetch);
        }

        if (rule.TokensPerMinute is { } tokens)
        {
            yield return new RateLimit(name + "/tokens", target, subject, true, rule.PerAccount, new RateSpec(tokens / 60.0, rule.TokenBurst ?? tokens), 0);
        }
    }
}
