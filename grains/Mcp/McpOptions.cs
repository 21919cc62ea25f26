using System.Text.RegularExpressions;
using Spine.Tools;

namespace Spine.Mcp;

/// <summary>Model Context Protocol servers whose tools are Spine tools (<c>Spine:Mcp</c>).</summary>
public sealed class McpOptions
{
    /// <summary>The servers.</summary>
    public List<McpServerSettings> Servers { get; set; } = [];

    /// <summary>Every value out of range, each message naming its setting.</summary>
    public IEnumerable<string> Problems()
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < Servers.Count; i++)
        {
            var at = $"Spine:Mcp:Servers:{i}";
            var server = Servers[i];
            if (string.IsNullOrWhiteSpace(server.Name) || !McpServerSettings.NamePattern().IsMatch(server.Name))
            {
                yield return $"{at}:Name '{server.Name}' must be letters, digits, '_' or '-'.";
            }
            else if (!names.Add(server.Name))
            {
                yield return $"{at}:Name '{server.Name}' names two servers.";
            }

            if (string.IsNullOrWhiteSpace(server.Command) == (server.Url is null))
            {
                yield return $"{at}: set exactly one of Command (a server over stdio) and Url (over streamable HTTP).";
            }

            if (server.Url is { } url && (!url.IsAbsoluteUri || url.Scheme is not ("http" or "https")))
            {
                yield return $"{at}:Url '{url}' must be an absolute http or https address.";
            }

            if (server.CostPerCall is < 0)
            {
                yield return $"{at}:CostPerCall is {server.CostPerCall}: it must not be negative.";
            }

            if (server.ConnectTimeout <= TimeSpan.Zero)
            {
                yield return $"{at}:ConnectTimeout is {server.ConnectTimeout}: it must be positive.";
            }

            if (server.RefreshInterval is { } refresh && refresh < TimeSpan.FromMilliseconds(100))
            {
                yield return $"{at}:RefreshInterval is {refresh}: it must be at least 100 ms (or empty for none).";
            }
        }
    }
}

/// <summary>One MCP server: how to reach it, and what its tools are called and do.</summary>
public sealed partial class McpServerSettings
{
    /// <summary>The server's name; its tools are registered as <c>{ToolPrefix}{tool}</c>.</summary>
    public string Name { get; set; } = "";

    /// <summary>The command that starts a server speaking MCP over stdio (the silo starts it, and again after it dies).</summary>
    public string? Command { get; set; }

    /// <summary>The command's arguments.</summary>
    public List<string> Arguments { get; set; } = [];

    /// <summary>The command's working directory; null: the silo's.</summary>
    public string? WorkingDirectory { get; set; }

    /// <summary>Environment variables of the command (credentials belong in <c>Spine:Secrets</c>, not here).</summary>
    public Dictionary<string, string> Environment { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The address of a server speaking MCP over streamable HTTP.</summary>
    public Uri? Url { get; set; }

    /// <summary>Put before each tool's name; null: the server's name and <c>_</c>.</summary>
    public string? ToolPrefix { get; set; }

    /// <summary>What the server's tools do to the world (the protocol does not say reliably). Default <see cref="ToolEffect.SideEffecting"/>.</summary>
    public ToolEffect Effect { get; set; } = ToolEffect.SideEffecting;

    /// <summary>What one successful call of any of its tools costs (see <c>ToolDefinition.CostPerCall</c>); null: nothing.</summary>
    public decimal? CostPerCall { get; set; }

    /// <summary>How long one attempt of a tool call may take; null: no limit.</summary>
    public TimeSpan? CallTimeout { get; set; }

    /// <summary>How long connecting (starting the server and the handshake) may take. Default 30 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How often the silo asks the server for its tools again, besides when the server says its list changed and after
    /// it reconnects; null: never. Default 1 minute.
    /// </summary>
    public TimeSpan? RefreshInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>The prefix in effect.</summary>
    public string Prefix => ToolPrefix ?? Name + "_";

    [GeneratedRegex("^[A-Za-z0-9_-]+$")]
    internal static partial Regex NamePattern();
}
