using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;

namespace Spine.Bench;

/// <summary>
/// Diagnostic only (--memory-reminders): a reminder table held in this process, so a run's reminder
/// register and unregister cost no PostgreSQL transaction. Comparing with the normal figures isolates what
/// the ADO.NET reminder writes cost; a silo using it loses the crash recovery the reminders give.
/// </summary>
public sealed class MemoryReminderTable : IReminderTable
{
    private readonly ConcurrentDictionary<(GrainId Grain, string Name), ReminderEntry> _rows = new();
    private long _etag;

    /// <inheritdoc />
    public Task<ReminderTableData> ReadRows(GrainId grainId) =>
        Task.FromResult(new ReminderTableData(_rows.Values.Where(r => r.GrainId == grainId).ToList()));

    /// <inheritdoc />
    public Task<ReminderTableData> ReadRows(uint begin, uint end)
    {
        // The ring range (begin, end], wrapping past zero when begin >= end, as the reminder service reads it.
        bool InRange(uint hash) => begin < end ? hash > begin && hash <= end : hash > begin || hash <= end;
        return Task.FromResult(new ReminderTableData(_rows.Values.Where(r => InRange(r.GrainId.GetUniformHashCode())).ToList()));
    }

    /// <inheritdoc />
    public Task<ReminderEntry?> ReadRow(GrainId grainId, string reminderName) =>
        Task.FromResult(_rows.TryGetValue((grainId, reminderName), out var row) ? row : null);

    /// <inheritdoc />
    public Task<string?> UpsertRow(ReminderEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var etag = Interlocked.Increment(ref _etag).ToString(CultureInfo.InvariantCulture);
        _rows[(entry.GrainId, entry.ReminderName)] = new ReminderEntry
        {
            GrainId = entry.GrainId,
            ReminderName = entry.ReminderName,
            StartAt = entry.StartAt,
            Period = entry.Period,
            ETag = etag,
        };
        return Task.FromResult<string?>(etag);
    }

    /// <inheritdoc />
    public Task<bool> RemoveRow(GrainId grainId, string reminderName, string eTag)
    {
        var key = (grainId, reminderName);
        return Task.FromResult(_rows.TryGetValue(key, out var row) && row.ETag == eTag && _rows.TryRemove(key, out _));
    }

    /// <inheritdoc />
    public Task TestOnlyClearTable()
    {
        _rows.Clear();
        return Task.CompletedTask;
    }
}

/// <summary>
/// Builds the service provider from the final service collection after an edit: the only hook that runs
/// after the silo host's own registrations, which the benchmark may not change at their source.
/// </summary>
public sealed class EditingServiceProviderFactory(Action<IServiceCollection> edit) : IServiceProviderFactory<IServiceCollection>
{
    private readonly DefaultServiceProviderFactory _inner = new();

    /// <inheritdoc />
    public IServiceCollection CreateBuilder(IServiceCollection services)
    {
        edit(services);
        return _inner.CreateBuilder(services);
    }

    /// <inheritdoc />
    public IServiceProvider CreateServiceProvider(IServiceCollection containerBuilder) => _inner.CreateServiceProvider(containerBuilder);
}

/// <summary>CPU time of PostgreSQL's server processes, read from /proc (Linux, local server only).</summary>
public sealed class PostgresCpu(int postmasterPid)
{
    private static readonly double _ticksPerSecond = 100; // USER_HZ, 100 on every Linux this runs on.

    /// <summary>The postmaster's pid from its pid file, or null when unreadable.</summary>
    public static PostgresCpu? FromDataDirectory(string dataDirectory)
    {
        try
        {
            var first = File.ReadLines(Path.Combine(dataDirectory, "pgdata", "postmaster.pid")).First();
            return new PostgresCpu(int.Parse(first.Trim(), CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// Seconds of CPU used so far by the postmaster, its exited (reaped) children and its live children:
    /// together every backend, the WAL writer, the checkpointer and the rest.
    /// </summary>
    public double Seconds()
    {
        var total = 0L;
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            var fields = Stat(pid);
            if (fields is null)
            {
                continue;
            }

            // After "pid (comm)": [1] ppid, [11] utime, [12] stime, [13] cutime, [14] cstime.
            if (pid == postmasterPid)
            {
                total += fields[11] + fields[12] + fields[13] + fields[14];
            }
            else if (fields[1] == postmasterPid)
            {
                total += fields[11] + fields[12];
            }
        }

        return total / _ticksPerSecond;
    }

    /// <summary>CPU seconds used by this process's exited children (such as pgbench once waited for).</summary>
    public static double ReapedChildrenSeconds()
    {
        var fields = Stat(Environment.ProcessId);
        return fields is null ? 0 : (fields[13] + fields[14]) / _ticksPerSecond;
    }

    private static long[]? Stat(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        // The command name may hold spaces or parentheses: the fields start after the last ')'.
        var rest = text[(text.LastIndexOf(')') + 2)..].Split(' ');
        return rest.Select(f => long.TryParse(f, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : 0).ToArray();
    }
}
