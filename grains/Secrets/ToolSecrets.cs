using System.Text.Json;
using Spine.Errors;
using Spine.Tools;

namespace Spine.Secrets;

/// <summary>
/// The secrets one attempt of a tool call may read: those its definition declares (<see cref="ToolDefinition.Secrets"/>),
/// resolved as the attempt began. Nothing else sees them: they are not in the call's arguments, the journal or the
/// model's messages.
/// </summary>
public sealed class ToolSecrets
{
    private readonly string _tool;
    private readonly IReadOnlyDictionary<string, string> _values;

    internal ToolSecrets(string tool, IReadOnlyDictionary<string, string> values)
    {
        _tool = tool;
        _values = values;
    }

    /// <summary>The secret's value.</summary>
    /// <exception cref="InvalidOperationException">The tool's definition does not declare the secret.</exception>
    public string Get(string name) =>
        _values.TryGetValue(name, out var value) ? value
            : throw new InvalidOperationException($"Tool '{_tool}' does not declare the secret '{name}'" + (_values.Count == 0 ? "; it declares none." : $"; it declares {string.Join(", ", _values.Keys)}."));

    /// <summary>No secrets: what a tool that declares none gets.</summary>
    public static ToolSecrets None { get; } = new("(none)", new Dictionary<string, string>());

    /// <summary>The names only.</summary>
    public override string ToString() => $"secrets of tool '{_tool}': {string.Join(", ", _values.Keys)}";
}

/// <summary>
/// Invokes tools with their secrets: resolves the declared ones for each attempt (a rotated secret is picked up by the
/// next attempt), and redacts every known secret from the output, and from an exception, before anything records them.
/// </summary>
internal sealed class SecretfulInvoker(ISecretProvider provider, SecretRedactor redactor)
{
    public SecretRedactor Redactor => redactor;

    /// <summary>Runs one attempt of <paramref name="tool"/> on <paramref name="arguments"/>.</summary>
    public async Task<JsonElement> InvokeAsync(ITool tool, JsonElement arguments, Func<ToolSecrets, ToolContext> context, Func<Exception, ErrorClass?>? classify, CancellationToken cancellationToken)
    {
        var secrets = await ResolveAsync(tool.Definition, cancellationToken);
        JsonElement output;
        try
        {
            output = await tool.InvokeAsync(arguments, context(secrets));
        }
        catch (Exception e) when (redactor.Mentions(e))
        {
            throw redactor.Scrubbed(e, classify ?? tool.Definition.ClassifyError);
        }

        return redactor.Redact(output);
    }

    private async Task<ToolSecrets> ResolveAsync(ToolDefinition tool, CancellationToken cancellationToken)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in tool.Secrets)
        {
            var value = await provider.GetAsync(name, cancellationToken)
                // Worth retrying: an operator may be putting it back (the breaker and the retry budget still bound it).
                ?? throw new TransientException($"The secret '{name}' of tool '{tool.Name}' is not available: set {provider.Describe(name)}.");
            if (value.Length < SecretRedactor.MinimumLength)
            {
                throw new TerminalException($"The secret '{name}' of tool '{tool.Name}' is shorter than {SecretRedactor.MinimumLength} characters: it could not be kept out of journals and logs.");
            }

            redactor.Remember(name, value);
            values[name] = value;
        }

        return new ToolSecrets(tool.Name, values);
    }
}
