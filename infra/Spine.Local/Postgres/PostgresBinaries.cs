using System.Globalization;

namespace Spine.Local.Postgres;

/// <summary>
/// Finds the machine's PostgreSQL server binaries. Installing them is the machine's business
/// (<c>apt-get install postgresql</c>, which <c>infra/scripts/test.sh</c> does when they are missing).
/// </summary>
internal static class PostgresBinaries
{
    /// <summary>The environment variable naming the folder that holds <c>pg_ctl</c>, <c>initdb</c> and <c>postgres</c>.</summary>
    public const string BinDirectoryVariable = "SPINE_PG_BIN";

    // Debian's /usr/bin holds only wrapper scripts without initdb, so the versioned folder is preferred.
    private const string DebianRoot = "/usr/lib/postgresql";

    /// <summary>The folder holding the server binaries: <c>SPINE_PG_BIN</c>, else the newest Debian version, else PATH.</summary>
    /// <exception cref="LocalPostgresException">None was found.</exception>
    public static string FindBinDirectory()
    {
        var fromEnvironment = Environment.GetEnvironmentVariable(BinDirectoryVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
        {
            var directory = Path.GetFullPath(fromEnvironment);
            return HasServerBinaries(directory)
                ? directory
                : throw new LocalPostgresException(
                    $"{BinDirectoryVariable} is set to '{fromEnvironment}', but that folder does not contain pg_ctl, initdb and postgres.");
        }

        return FindInDebianFolders() ?? FindOnPath() ?? throw new LocalPostgresException(
            $"PostgreSQL server binaries (pg_ctl, initdb, postgres) were not found in {DebianRoot}/*/bin or on PATH. "
            + $"Install them with `apt-get install postgresql`, or set {BinDirectoryVariable} to the folder that holds them.");
    }

    private static string? FindInDebianFolders()
    {
        if (!Directory.Exists(DebianRoot))
        {
            return null;
        }

        return Directory.GetDirectories(DebianRoot)
            .Select(versionDirectory => (Version: ParseVersion(Path.GetFileName(versionDirectory)), Bin: Path.Combine(versionDirectory, "bin")))
            .Where(candidate => candidate.Version is not null && HasServerBinaries(candidate.Bin))
            .OrderByDescending(candidate => candidate.Version)
            .Select(candidate => candidate.Bin)
            .FirstOrDefault();
    }

    private static string? FindOnPath()
    {
        foreach (var pathDirectory in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var pgCtl = new FileInfo(Path.Combine(pathDirectory, "pg_ctl"));
            if (!pgCtl.Exists)
            {
                continue;
            }

            // Follow symlinks such as /usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl so initdb is found beside it.
            var target = pgCtl.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? pgCtl.FullName;
            foreach (var candidate in new[] { Path.GetDirectoryName(target)!, Path.GetFullPath(pathDirectory) }.Distinct(StringComparer.Ordinal))
            {
                if (HasServerBinaries(candidate))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    private static Version? ParseVersion(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }

        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var major))
        {
            return new Version(major, 0);
        }

        return Version.TryParse(text, out var version) ? version : null;
    }

    private static bool HasServerBinaries(string directory) =>
        File.Exists(Path.Combine(directory, "pg_ctl"))
        && File.Exists(Path.Combine(directory, "initdb"))
        && File.Exists(Path.Combine(directory, "postgres"));
}
