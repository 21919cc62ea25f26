using Spine.Runs;
using Spine.Slo;
using Spine.Tests.Infrastructure;
using Spine.Workflows;

namespace Spine.Tests.Slo;

/// <summary>Succeeds or fails as asked, in one step.</summary>
[Workflow(Name)]
public sealed class SloWorkflow : IWorkflow<bool, string>
{
    public const string Name = "test.slo";

    public async Task<string> RunAsync(IWorkflowContext context, bool succeed)
    {
        await context.RunAsync("work", _ => Task.FromResult(1));
        return succeed ? "ok" : throw new InvalidOperationException("asked to fail");
    }
}

/// <summary>Reliability SLOs from the run index, through the client.</summary>
[Collection(ClusterCollection.Name)]
public sealed class SloTests(ClusterFixture fixture)
{
    public const double Target = 0.9;

    [Fact]
    public async Task TheSuccessRate_ErrorBudgetAndBurnRate_CountTheRunsThatEnded_AgainstTheTarget()
    {
        var before = Hour(await fixture.Client.GetSloAsync(SloWorkflow.Name));

        foreach (var succeed in new[] { true, true, true, false })
        {
            var run = await fixture.Client.StartAsync(SloWorkflow.Name, succeed);
            var done = await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));
            Assert.Equal(succeed ? RunStatus.Completed : RunStatus.Failed, done.Status);
        }

        var report = Assert.Single(await fixture.Client.GetSloAsync(SloWorkflow.Name));
        var hour = Hour([report]);

        Assert.Equal(Target, report.Target);
        Assert.Equal([TimeSpan.FromHours(1), TimeSpan.FromHours(24), TimeSpan.FromDays(7)], report.Windows.Select(w => w.Window));
        Assert.Equal(before.Succeeded + 3, hour.Succeeded);
        Assert.Equal(before.Failed + 1, hour.Failed);
        var counted = hour.Succeeded + hour.Failed;
        Assert.Equal(hour.Succeeded / (double)counted, hour.SuccessRate!.Value, 6);
        Assert.Equal(1 - (hour.Failed / ((1 - Target) * counted)), hour.ErrorBudgetRemaining!.Value, 6);
        Assert.Equal((hour.Failed / (double)counted) / (1 - Target), hour.BurnRate!.Value, 6);
        Assert.All(report.Windows, w => Assert.True(w.Succeeded >= hour.Succeeded && w.Failed >= hour.Failed));
    }

    [Fact]
    public async Task AWorkflowWithATargetButNoEndedRuns_IsReportedWithoutRates()
    {
        var report = Assert.Single(await fixture.Client.GetSloAsync("test.slo-idle"));

        Assert.Equal(0.5, report.Target);
        Assert.All(report.Windows, w => Assert.Null(w.SuccessRate));
        Assert.All(report.Windows, w => Assert.Null(w.BurnRate));
    }

    private static SloWindow Hour(IReadOnlyList<SloReport> reports) =>
        reports.SingleOrDefault()?.Windows[0] ?? new SloWindow { Window = TimeSpan.FromHours(1) };
}
