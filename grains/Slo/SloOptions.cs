namespace Spine.Slo;

/// <summary>Reliability targets (<c>Spine:Slo</c>).</summary>
public sealed class SloOptions
{
    /// <summary>The end-to-end success-rate target per workflow type, between 0 and 1 (exclusive), e.g. <c>"refund": 0.995</c>.</summary>
    public Dictionary<string, double> Targets { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The rolling windows reported. Default 1 hour, 24 hours and 7 days.</summary>
    public List<TimeSpan> Windows { get; set; } = [TimeSpan.FromHours(1), TimeSpan.FromHours(24), TimeSpan.FromDays(7)];

    /// <summary>Every value out of range, each message naming its setting.</summary>
    public IEnumerable<string> Problems()
    {
        foreach (var (workflow, target) in Targets)
        {
            if (target is <= 0 or >= 1 || double.IsNaN(target))
            {
                yield return $"Spine:Slo:Targets:{workflow} is {target}: it must be between 0 and 1, exclusive (0.99 is 99%).";
            }
        }

        for (var i = 0; i < Windows.Count; i++)
        {
            if (Windows[i] <= TimeSpan.Zero || Windows[i] > TimeSpan.FromDays(366))
            {
                yield return $"Spine:Slo:Windows:{i} is {Windows[i]}: it must be positive and at most 366 days.";
            }
        }

        if (Windows.Count == 0)
        {
            yield return "Spine:Slo:Windows is empty: give at least one window.";
        }
    }
}
