using System.Globalization;
using Microsoft.Extensions.Options;

namespace Spine.Silo.Admin;

/// <summary>Checks <see cref="AdminOptions"/>: every key problem is reported at once, each naming its setting.</summary>
internal sealed class AdminOptionsValidator : IValidateOptions<AdminOptions>
{
    /// <summary>The shortest key accepted.</summary>
    public const int MinimumKeyLength = 16;

    public ValidateOptionsResult Validate(string? name, AdminOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = new List<string>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var digests = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.Keys.Count; i++)
        {
            var key = options.Keys[i];
            var setting = string.Create(CultureInfo.InvariantCulture, $"{AdminOptions.SectionName}:Keys:{i}");
            if (string.IsNullOrWhiteSpace(key.Id) || key.Id.Any(char.IsControl))
            {
                problems.Add($"{setting}:Id is empty or holds a control character.");
            }
            else if (!ids.Add(key.Id))
            {
                problems.Add($"{setting}:Id '{key.Id}' is given to another key too.");
            }

            foreach (var role in key.Roles)
            {
                if (string.IsNullOrWhiteSpace(role) || role.Any(char.IsControl))
                {
                    problems.Add($"{setting}:Roles holds an empty role or one with a control character.");
                }
            }

            switch (key.Key, key.Sha256)
            {
                case (null or "", null or ""):
                    problems.Add($"{setting} has neither Key nor Sha256.");
                    break;
                case ({ Length: > 0 }, { Length: > 0 }):
                    problems.Add($"{setting} has both Key and Sha256: give one.");
                    break;
                case ({ Length: > 0 } plain, _) when plain.Length < MinimumKeyLength:
                    problems.Add($"{setting}:Key is {plain.Length} characters: it must be at least {MinimumKeyLength}.");
                    break;
                case (_, { Length: > 0 } hex) when !ApiKeys.IsDigest(hex):
                    problems.Add($"{setting}:Sha256 is not 64 hex digits.");
                    break;
            }

            if (ApiKeys.DigestOf(key) is { } digest && !digests.Add(digest))
            {
                problems.Add($"{setting} is the same key as another one.");
            }
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
