using System.Diagnostics;

namespace Spine.Local.Postgres;

/// <summary>An exclusive advisory lock on a file, held across processes while a cluster is set up.</summary>
internal sealed class FolderLock : IAsyncDisposable
{
    private FileStream? _stream;

    private FolderLock(FileStream stream) => _stream = stream;

    public static async Task<FolderLock> AcquireAsync(string path, TimeSpan timeout, CancellationToken ct)
    {
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                // FileShare.None takes an flock on Unix, which another process asking the same fails on.
                return new FolderLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
            }
            catch (IOException) when (waited.Elapsed < timeout)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(200), ct);
            }
            catch (IOException ex)
            {
                throw new LocalPostgresException($"Timed out after {timeout.TotalSeconds:0} s waiting for the lock {path} held by another process.", ex);
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        var stream = Interlocked.Exchange(ref _stream, null);
        return stream?.DisposeAsync() ?? ValueTask.CompletedTask;
    }
}
