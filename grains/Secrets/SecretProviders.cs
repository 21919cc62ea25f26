using System.Globalization;
using System.Text;
using Microsoft.Extensions.Options;

namespace Spine.Secrets;

/// <summary>Secrets in environment variables: <c>{prefix}{NAME}</c>, the name upper-cased with every other character than a letter or digit as '_'.</summary>
public sealed class EnvironmentSecretProvider(string prefix) : ISecretProvider
{
    /// <inheritdoc />
    public ValueTask<string?> GetAsync(string name, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Environment.GetEnvironmentVariable(VariableOf(name)) is { Length: > 0 } value ? value : null);

    /// <inheritdoc />
    public string Describe(string name) => $"the environment variable {VariableOf(name)}";

    private string VariableOf(string name)
    {
        var variable = new StringBuilder(prefix, prefix.Length + name.Length);
        foreach (var c in name)
        {
            variable.Append(char.IsAsciiLetterOrDigit(c) ? char.ToUpperInvariant(c) : '_');
        }

        return variable.ToString();
    }
}

/// <summary>Secrets in files: one per secret in a folder, named as the secret; read at each attempt, so replacing a file rotates the secret.</summary>
public sealed class FileSecretProvider(string directory) : ISecretProvider
{
    /// <inheritdoc />
    public async ValueTask<string?> GetAsync(string name, CancellationToken cancellationToken)
    {
        var path = PathOf(name);
        try
        {
            var value = (await File.ReadAllTextAsync(path, cancellationToken)).TrimEnd('\r', '\n');
            return value.Length > 0 ? value : null;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    /// <inheritdoc />
    public string Describe(string name) => $"the file {PathOf(name)}";

    private string PathOf(string name) => Path.Combine(directory, name);
}

/// <summary>The configured providers in order (files first, then environment variables): the first that holds a secret answers.</summary>
internal sealed class DefaultSecretProvider : ISecretProvider
{
    private readonly IReadOnlyList<ISecretProvider> _providers;

    public DefaultSecretProvider(IOptions<SecretOptions> options)
    {
        var settings = options.Value;
        var providers = new List<ISecretProvider>();
        if (!string.IsNullOrWhiteSpace(settings.Directory))
        {
            providers.Add(new FileSecretProvider(settings.Directory));
        }

        if (!string.IsNullOrEmpty(settings.EnvironmentPrefix))
        {
            providers.Add(new EnvironmentSecretProvider(settings.EnvironmentPrefix));
        }

        _providers = providers;
    }

    public async ValueTask<string?> GetAsync(string name, CancellationToken cancellationToken)
    {
        foreach (var provider in _providers)
        {
            if (await provider.GetAsync(name, cancellationToken) is { } value)
            {
                return value;
            }
        }

        return null;
    }

    public string Describe(string name) =>
        _providers.Count == 0 ? "no secret provider (set Spine:Secrets:Directory or Spine:Secrets:EnvironmentPrefix)"
            : string.Join(" or ", _providers.Select(p => p.Describe(name)));
}

/// <summary>Checks a secret name: letters, digits, '_', '-' and '.', at most 128 characters, so it is a file name and an environment variable on every system.</summary>
internal static class SecretNames
{
    public static string? Problem(string? name) =>
        string.IsNullOrEmpty(name) ? "a secret name may not be empty"
        : name.Length > 128 ? string.Create(CultureInfo.InvariantCulture, $"the secret name '{name[..20]}...' is longer than 128 characters")
        : name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.') && name[0] != '.' ? null
        : $"the secret name '{name}' may hold only letters, digits, '_', '-' and '.' (and may not begin with '.')";
}
