using System.Diagnostics.CodeAnalysis;
using NuGet.Versioning;

namespace Spine.Tools;

/// <summary>
/// Version ranges of tool contracts: npm-style shorthands (<c>^1.2</c>, <c>~1.2.3</c>) and NuGet's interval notation
/// (<c>[1.0.0,2.0.0)</c>, <c>1.2.0</c> for "at least 1.2.0"), parsed with NuGet.Versioning.
/// </summary>
public static class ToolVersions
{
    /// <summary>
    /// Parses a range. <c>^1.2</c> is <c>[1.2.0, 2.0.0)</c> (the same major; for 0.x the same minor, for 0.0.x that
    /// patch only), <c>~1.2</c> is <c>[1.2.0, 1.3.0)</c>, <c>~1</c> is <c>[1.0.0, 2.0.0)</c>. A shorthand's upper bound
    /// leaves out the next version's pre-releases too (<c>^1.2</c> does not take <c>2.0.0-beta</c>).
    /// </summary>
    public static bool TryParseRange(string? text, [NotNullWhen(true)] out VersionRange? range)
    {
        range = null;
        var trimmed = text?.Trim();
        if (string.IsNullOrEmpty(trimmed))
        {
            return false;
        }

        if (trimmed[0] is not ('^' or '~'))
        {
            return VersionRange.TryParse(trimmed, out range);
        }

        var parts = trimmed[1..].Split('.');
        if (parts.Length is < 1 or > 3 || parts.Any(p => p.Length == 0 || !p.All(char.IsAsciiDigit)))
        {
            return false;
        }

        if (!int.TryParse(parts[0], out var major) || !int.TryParse(parts.Length > 1 ? parts[1] : "0", out var minor) || !int.TryParse(parts.Length > 2 ? parts[2] : "0", out var patch))
        {
            return false;
        }

        var lower = new NuGetVersion(major, minor, patch);
        NuGetVersion upper;
        if (trimmed[0] == '~')
        {
            upper = parts.Length == 1 ? new NuGetVersion(major + 1, 0, 0, "0") : new NuGetVersion(major, minor + 1, 0, "0");
        }
        else if (major > 0 || parts.Length == 1)
        {
            upper = new NuGetVersion(major + 1, 0, 0, "0");
        }
        else if (minor > 0 || parts.Length == 2)
        {
            upper = new NuGetVersion(0, minor + 1, 0, "0");
        }
        else
        {
            upper = new NuGetVersion(0, 0, patch + 1, "0");
        }

        range = new VersionRange(lower, includeMinVersion: true, upper, includeMaxVersion: false, originalString: trimmed);
        return true;
    }

    /// <summary>The newest of <paramref name="versions"/> in <paramref name="range"/>: the newest stable one, else the newest pre-release; null when none is.</summary>
    public static string? NewestIn(IEnumerable<string> versions, VersionRange range)
    {
        ArgumentNullException.ThrowIfNull(range);
        var inRange = versions.Select(v => (Text: v, Parsed: NuGetVersion.Parse(v))).Where(v => range.Satisfies(v.Parsed)).OrderBy(v => v.Parsed).ToList();
        return inRange.LastOrDefault(v => !v.Parsed.IsPrerelease).Text ?? inRange.LastOrDefault().Text;
    }

    /// <summary>How a range reads back in messages: as configured.</summary>
    public static string Describe(VersionRange range) =>
        range.OriginalString is { Length: > 0 } original ? original : range.PrettyPrint();
}
