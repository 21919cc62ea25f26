using Spine.Agents;
using Spine.Runs;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Runs;

[Collection(ClusterCollection.Name)]
public sealed class RecoverySweepTests(ClusterFixture fixture)
{
    [Fact]
    public async Task Sweep_ExecutingRunWithoutActivation_ResumesItWithoutAnyCallToTheRun()
    {
        var prompt = "sweep " + Guid.NewGuid();
        var run = await fixture.Client.StartAsync("agent", new AgentInput(prompt, Tools: ["test_gate"], ChatClient: "gatekeeper"));
        await Eventually.GetAsync(() => Task.FromResult(GateTool.Keys(run.RunId).Count), n => n == 1, TimeSpan.FromSeconds(30), "the tool call to start");
        await fixture.Cluster.DeactivateAsync(fixture.Cluster.Client.GetGrain<IWorkflowRunGrain>(run.RunId));

        // The sweep's own reminder may get there first; either way nothing but the sweep touches the run.
        var partition = await fixture.Postgres.ScalarAsync<short>("SELECT sweep_partition FROM spine_runs WHERE run_id = @id", ("id", run.RunId));
        await fixture.Cluster.Client.GetGrain<IRunRecoveryGrain>(partition).SweepAsync();
        var status = await Eventually.GetAsync(
            () => fixture.Postgres.ScalarAsync<short>("SELECT status FROM spine_runs WHERE run_id = @id", ("id", run.RunId)),
            s => s == (short)RunStatus.Completed, TimeSpan.FromSeconds(30), "the run to complete");

        Assert.Equal((short)RunStatus.Completed, status);
        Assert.Equal(2, GateTool.Keys(run.RunId).Count);
    }
}
