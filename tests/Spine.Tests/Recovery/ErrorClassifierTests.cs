using System.Net;
using Spine.Errors;
using Spine.Recovery;
using Xunit.Abstractions;

namespace Spine.Tests.Recovery;

public sealed class ErrorClassifierTests(ITestOutputHelper output)
{
    public static TheoryData<Exception, ErrorClass> Cases() => new()
    {
        { new TimeoutException(), ErrorClass.Transient },
        { new IOException("connection reset by peer"), ErrorClass.Transient },
        { new System.Net.Sockets.SocketException(104), ErrorClass.Transient },
        { new HttpRequestException("rate limited", null, HttpStatusCode.TooManyRequests), ErrorClass.Transient },
        { new HttpRequestException("bad gateway", null, HttpStatusCode.BadGateway), ErrorClass.Transient },
        { new HttpRequestException("no route"), ErrorClass.Transient },
        { new HttpRequestException("not found", null, HttpStatusCode.NotFound), ErrorClass.Terminal },
        { new HttpRequestException("bad request", null, HttpStatusCode.BadRequest), ErrorClass.Terminal },
        { new SchemaValidationException("t", "1.0.0", "input", ["/x: bad"]), ErrorClass.Terminal },
        { new InvalidPayloadException("input", "not JSON"), ErrorClass.Terminal },
        { new UnknownToolException("t", null), ErrorClass.Terminal },
        { new TransientException("try again"), ErrorClass.Transient },
        { new TerminalException("give up"), ErrorClass.Terminal },
        { new CircuitOpenException("t", DateTimeOffset.UtcNow), ErrorClass.CircuitOpen },
        { new ArgumentException("bug"), ErrorClass.Terminal },
        { new AggregateException(new TimeoutException()), ErrorClass.Transient },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Classify_DefaultRules_MatchTaxonomy(Exception exception, ErrorClass expected) =>
        Assert.Equal(expected, ErrorClassifier.Classify(exception));

    [Fact]
    public void Classify_CustomClassifierAnswers_OverridesDefaults()
    {
        var custom = (Exception e) => e is TimeoutException ? ErrorClass.Terminal : (ErrorClass?)null;

        Assert.Equal(ErrorClass.Terminal, ErrorClassifier.Classify(new TimeoutException(), custom));
        Assert.Equal(ErrorClass.Transient, ErrorClassifier.Classify(new IOException(), custom));
    }

    [Theory]
    [InlineData(1, 100)]
    [InlineData(2, 200)]
    [InlineData(3, 400)]
    [InlineData(6, 1000)]
    public void DelayAfter_NoJitter_IsExponentialAndCapped(int attempt, int expectedMs)
    {
        var policy = new RetryPolicy { InitialDelay = TimeSpan.FromMilliseconds(100), Multiplier = 2, MaxDelay = TimeSpan.FromSeconds(1), Jitter = 0 };

        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), policy.DelayAfter(attempt, 0.7));
    }

    [Fact]
    public void DelayAfter_WithJitter_StaysWithinSpread()
    {
        var policy = new RetryPolicy { InitialDelay = TimeSpan.FromMilliseconds(1000), Jitter = 0.2 };

        Assert.Equal(TimeSpan.FromMilliseconds(800), policy.DelayAfter(1, 0.0));
        Assert.Equal(TimeSpan.FromMilliseconds(1200), policy.DelayAfter(1, 1.0));
        var seed = Random.Shared.Next();
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        for (var i = 0; i < 100; i++)
        {
            var delay = policy.DelayAfter(1, random.NextDouble());
            Assert.True(delay.TotalMilliseconds is >= 800 and <= 1200, $"{delay.TotalMilliseconds} ms is outside 800..1200 (seed {seed})");
        }
    }
}
