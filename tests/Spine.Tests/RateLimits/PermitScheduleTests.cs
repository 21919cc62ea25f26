using Spine.RateLimits;

namespace Spine.Tests.RateLimits;

public sealed class PermitScheduleTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void WithACapacityOfOne_PermitsAreSpacedAtTheRate()
    {
        var schedule = new PermitSchedule(Now);
        var spec = new RateSpec(20, 1);

        var times = Enumerable.Range(0, 5).Select(_ => schedule.Take(spec, 1, Now)).ToList();

        Assert.Equal(Enumerable.Range(0, 5).Select(i => Now + TimeSpan.FromMilliseconds(50 * i)), times);
    }

    [Fact]
    public void ABurstGoesAtOnce_ThenTheRateHolds_AndAQuietSpellRefillsIt()
    {
        var schedule = new PermitSchedule(Now);
        var spec = new RateSpec(10, 3);

        var times = Enumerable.Range(0, 5).Select(_ => schedule.Take(spec, 1, Now)).ToList();
        Assert.Equal([Now, Now, Now, Now + TimeSpan.FromMilliseconds(100), Now + TimeSpan.FromMilliseconds(200)], times);

        var later = Now + TimeSpan.FromSeconds(10);
        Assert.Equal(later, schedule.Take(spec, 1, later));
        Assert.Equal(later, schedule.Take(spec, 1, later));
        Assert.Equal(later, schedule.Take(spec, 1, later));
        Assert.Equal(later + TimeSpan.FromMilliseconds(100), schedule.Take(spec, 1, later));
    }

    [Fact]
    public void AScheduleNeverUsed_StartsWithAFullBucket()
    {
        // A limit's grain that has never written its mark starts from DateTimeOffset.MinValue.
        var schedule = new PermitSchedule(DateTimeOffset.MinValue);
        var spec = new RateSpec(10, 3);

        Assert.Equal(Now, schedule.FreeAt(spec, 1, Now));
        var times = Enumerable.Range(0, 4).Select(_ => schedule.Take(spec, 1, Now)).ToList();
        Assert.Equal([Now, Now, Now, Now + TimeSpan.FromMilliseconds(100)], times);
    }

    [Fact]
    public void TokensAreWeighed_AndAnAmountOverTheCapacityWaitsForAFullBucket()
    {
        var schedule = new PermitSchedule(Now);
        var spec = new RateSpec(100, 1000);

        Assert.Equal(Now, schedule.Take(spec, 600, Now));
        Assert.Equal(Now + TimeSpan.FromSeconds(2), schedule.Take(spec, 600, Now));
        Assert.Equal(Now + TimeSpan.FromSeconds(12), schedule.Take(spec, 5000, Now));
    }

    [Fact]
    public void ABlock_HoldsEveryPermitBackUntilItEnds()
    {
        var schedule = new PermitSchedule(Now);
        var spec = new RateSpec(10, 5);
        schedule.Block(Now + TimeSpan.FromSeconds(3));

        Assert.Equal(Now + TimeSpan.FromSeconds(3), schedule.Take(spec, 1, Now));
    }

    [Fact]
    public void BadLimits_AreRefusedAtStartUp_NamingTheSetting()
    {
        var options = new RateLimitOptions { MaxInMemoryWait = TimeSpan.FromSeconds(-1) };
        options.Limits.Add(new RateLimitRule { Tool = "nope", Requests = 5 });
        options.Limits.Add(new RateLimitRule { Tool = "known", Requests = -3 });
        options.Limits.Add(new RateLimitRule { ChatClient = "default", TokensPerMinute = 0 });
        options.Limits.Add(new RateLimitRule { Tool = "known", ChatClient = "default", Requests = 1 });
        options.Limits.Add(new RateLimitRule { Tool = "known", TokensPerMinute = 100 });

        var problems = RateLimitRegistry.Problems(options, tool => tool == "known", client => client == "default").ToList();

        Assert.Contains(problems, p => p.StartsWith("Spine:RateLimits:MaxInMemoryWait", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Spine:RateLimits:Limits:0:Tool names the tool 'nope'", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Spine:RateLimits:Limits:1:Requests must be positive", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Spine:RateLimits:Limits:2:TokensPerMinute must be positive", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Spine:RateLimits:Limits:3 must name exactly one", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Spine:RateLimits:Limits:4:TokensPerMinute applies to chat clients only", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Spine:RateLimits:Limits:4:Name 'tool:known' is used", StringComparison.Ordinal));
    }
}
