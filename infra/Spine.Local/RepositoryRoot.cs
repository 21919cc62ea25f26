namespace Spine.Local;

/// <summary>The root of the Spine repository: the folder holding <c>Orleans.sln</c>.</summary>
public static class RepositoryRoot
{
    /// <summary>The solution file that marks the root.</summary>
    public const string SolutionFile = "Orleans.sln";

    /// <summary>
    /// The nearest folder at or above <paramref name="start"/> (default: this process's base folder) that holds
    /// <see cref="SolutionFile"/>, or the working folder when there is none (an installed silo).
    /// </summary>
    public static string Find(string? start = null)
    {
        for (var dir = new DirectoryInfo(start ?? AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, SolutionFile)))
            {
                return dir.FullName;
            }
        }

        return Directory.GetCurrentDirectory();
    }
}
