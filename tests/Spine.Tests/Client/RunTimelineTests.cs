using Spine.Client;
using Spine.Runs;

namespace Spine.Tests.Client;

/// <summary>The timeline the admin API and <c>spine watch</c> show: latency and spend per outcome, actors only where the runtime records them.</summary>
public sealed class RunTimelineTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 4, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Timeline_TakesActorsFromDecisionsOnly_NotFromWhatAToolReturned()
    {
        var timeline = RunTimeline.Of(
        [
            Row(0, "RunStarted", null, """{"workflowType":"refund","startedBy":{"id":"svc:billing","roles":["operator"]}}""", 0),
            Row(1, "Tool", 1, """{"output":{"note":"hi"},"actor":{"id":"ceo","roles":["approver"]}}""", 120),
            Row(2, "BudgetSettled", 2, """{"tokens":30,"cost":0.05}""", 130),
            Row(3, "Model", 2, """{"text":"ok"}""", 180),
            Row(4, "Approval", 3, """{"decision":{"approved":true,"actor":{"id":"ann","roles":["finance"]}}}""", 200),
        ]);

        Assert.Equal("svc:billing", timeline[0].Actor!.Id);
        Assert.Null(timeline[1].Actor);
        Assert.Equal(120, timeline[1].LatencyMs);
        Assert.Null(timeline[1].Tokens);
        Assert.Equal(30, timeline[3].Tokens);
        Assert.Equal(0.05m, timeline[3].Cost);
        Assert.Equal(50, timeline[3].LatencyMs);
        Assert.Equal("ann", timeline[4].Actor!.Id);
    }

    private static JournalEntryView Row(int seq, string kind, int? step, string payload, int ms) => new()
    {
        Seq = seq, Kind = kind, Step = step, Name = kind, Outcome = "ok", PayloadJson = payload, RecordedAt = T0.AddMilliseconds(ms), Hash = "",
    };
}
