using System.Reflection;

namespace Spine.Local.Silos;

/// <summary>
/// Finds the silo executable's <c>Spine.Silo.dll</c>. Tests and the benchmark build it without referencing
/// its assembly (<c>ReferenceOutputAssembly="false"</c>): they drive it as a process, never load it.
/// </summary>
public static class SiloExecutable
{
    /// <summary>The file name of the silo executable's assembly.</summary>
    public const string AssemblyFileName = "Spine.Silo.dll";

    /// <summary>The folder of the silo project, relative to the repository root.</summary>
    private const string ProjectFolder = "silo";

    /// <summary>
    /// This process itself when it is the silo (its <c>demo</c> command), else the silo's build output beside
    /// the caller's: <c>&lt;root&gt;/silo/bin/&lt;Configuration&gt;/&lt;framework&gt;/Spine.Silo.dll</c> for a caller
    /// built into <c>&lt;root&gt;/&lt;project&gt;/bin/&lt;Configuration&gt;/&lt;framework&gt;</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The silo has not been built.</exception>
    public static string Locate()
    {
        var entry = Assembly.GetEntryAssembly();
        if (entry is not null && string.Equals(Path.GetFileName(entry.Location), AssemblyFileName, StringComparison.Ordinal))
        {
            return entry.Location;
        }

        var output = new DirectoryInfo(AppContext.BaseDirectory);
        var tail = new List<string>();
        for (var dir = output; dir?.Parent is not null; dir = dir.Parent)
        {
            if (dir.Name == "bin")
            {
                var root = RepositoryRoot.Find(dir.Parent.FullName);
                var candidate = Path.Combine([root, ProjectFolder, "bin", .. tail, AssemblyFileName]);
                return File.Exists(candidate)
                    ? candidate
                    : throw new FileNotFoundException($"The silo is not built: {candidate} is missing. Build silo/Spine.Silo.csproj with the same configuration.", candidate);
            }

            tail.Insert(0, dir.Name);
        }

        throw new FileNotFoundException($"Could not find {AssemblyFileName}: {AppContext.BaseDirectory} is not a build output folder (…/bin/<Configuration>/<framework>).", AssemblyFileName);
    }
}
