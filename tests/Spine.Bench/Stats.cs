using System.Globalization;

namespace Spine.Bench;

/// <summary>Percentiles and the figure output.</summary>
public static class Stats
{
    /// <summary>The nearest-rank percentile of sorted values (p in 0..100).</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        if (sorted.Count == 0)
        {
            return double.NaN;
        }

        var rank = (int)Math.Ceiling(p / 100 * sorted.Count);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Count - 1)];
    }
}

/// <summary>
/// Prints figures as <c>name=value</c> lines on stdout, the only thing written there, so a script can read them.
/// Under <c>all</c> each name is prefixed with its workload, since w10 and w10-seq report the same names.
/// </summary>
public sealed class Figures(string? prefix)
{
    /// <summary>Prints one figure.</summary>
    public void Add(string name, double value, string format = "F2")
    {
        var line = $"{(prefix is null ? "" : prefix + ".")}{name}={value.ToString(format, CultureInfo.InvariantCulture)}";
        Console.Out.WriteLine(line);
        Console.Out.Flush();
    }
}

/// <summary>Progress output: stderr, with the time since the benchmark started.</summary>
public static class Progress
{
    private static readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    /// <summary>Writes one progress line to stderr.</summary>
    public static void Say(string text) =>
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{_clock.Elapsed.TotalSeconds,7:F1}s] {text}"));
}
