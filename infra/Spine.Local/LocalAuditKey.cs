using Spine.Audit;

namespace Spine.Local;

/// <summary>
/// The journal key of a local set-up (the silo on its embedded PostgreSQL, the demo): a file of its own next to
/// the data folder, never inside it, readable by its owner only, created on first use and kept, so the journals
/// it signed keep verifying. A deployment sets <c>Spine:Audit:Key</c> or <c>Spine:Audit:KeyFile</c> instead.
/// </summary>
public static class LocalAuditKey
{
    /// <summary>The key file that belongs to <paramref name="dataDirectory"/>.</summary>
    public static string PathFor(string dataDirectory) =>
        Path.GetFullPath(dataDirectory).TrimEnd(Path.DirectorySeparatorChar) + ".audit-key";

    /// <summary>Reads the key file of <paramref name="dataDirectory"/>, creating it first when missing; returns its path.</summary>
    public static string EnsureFile(string dataDirectory)
    {
        var path = PathFor(dataDirectory);
        if (!File.Exists(path))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            // Written whole under another name, then moved into place: nobody reads a half-written key.
            var draft = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}";
            using (var file = new StreamWriter(draft, System.Text.Encoding.ASCII, options))
            {
                file.Write(AuditKey.Generate());
            }

            try
            {
                File.Move(draft, path, overwrite: false);
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another process created it first: use theirs.
                File.Delete(draft);
            }
        }

        return path;
    }

    /// <summary>The key of <paramref name="dataDirectory"/>'s key file as base64, creating the file when missing.</summary>
    public static string Read(string dataDirectory) => File.ReadAllText(EnsureFile(dataDirectory)).Trim();
}
