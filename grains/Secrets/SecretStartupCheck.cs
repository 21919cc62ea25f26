using Spine.Tools;

namespace Spine.Secrets;

/// <summary>
/// At start-up, every secret a registered tool declares must be available: a missing one stops the silo with an error
/// naming the tool, the secret and where it is looked for, instead of failing the tool's first call.
/// </summary>
internal static class SecretStartupCheck
{
    public static async Task RunAsync(ToolRegistry tools, ISecretProvider provider, CancellationToken cancellationToken)
    {
        var problems = new List<string>();
        foreach (var tool in tools.All)
        {
            foreach (var name in tool.Definition.Secrets)
            {
                var value = await provider.GetAsync(name, cancellationToken);
                if (value is null)
                {
                    problems.Add($"Tool '{tool.Definition.Name}' {tool.Definition.Version} needs the secret '{name}', which is not available: set {provider.Describe(name)}.");
                }
                else if (value.Length < SecretRedactor.MinimumLength)
                {
                    problems.Add($"Tool '{tool.Definition.Name}' {tool.Definition.Version}: the secret '{name}' is shorter than {SecretRedactor.MinimumLength} characters ({provider.Describe(name)}), too short to be kept out of journals and logs.");
                }
            }
        }

        if (problems.Count > 0)
        {
            throw new InvalidOperationException(string.Join(Environment.NewLine, problems));
        }
    }
}
