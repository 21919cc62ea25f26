using Orleans.Configuration;
using Orleans.TestingHost;
using Spine.Client;
using Spine.Hosting;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Runs;

/// <summary>A step that runs longer than Orleans' idle collection age, with no call reaching its run.</summary>
public sealed class LongStepTests
{
    [Fact]
    public async Task StepLongerThanCollectionAge_IsNotCollectedAndRunsOnce()
    {
        var postgres = await TestPostgres.GetAsync();
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddSpine(postgres.RuntimeConnectionString, null, o =>
            {
                o.ResumeReminderPeriod = TimeSpan.FromSeconds(1);
                o.Audit.Key = TestAudit.Key;
                TestSpine.OnSharedDatabase(o);
            });
            silo.Configure<GrainCollectionOptions>(o =>
            {
                o.CollectionAge = TimeSpan.FromSeconds(2);
                o.CollectionQuantum = TimeSpan.FromSeconds(1);
            });
            silo.Services.AddSpineWorkflow<StepsWorkflow, StepsInput, int>();
            silo.Services.AddSpineWorkflow<LongStepWorkflow, int, int>();
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        var client = new SpineClient(cluster.Client);

        var run = await client.StartAsync("test.long-step", 6000);

        // Nothing calls the run while its step runs three collection ages long.
        await Task.Delay(TimeSpan.FromSeconds(8));
        var done = await client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));

        Assert.Equal(RunStatus.Completed, done.Status);
        Assert.Equal(1, Effects.Of(run.RunId, "long-started"));
        await cluster.StopAllSilosAsync();
    }
}
