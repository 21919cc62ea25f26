using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Spine.Approvals;
using Spine.Client;
using Spine.Errors;
using Spine.Identity;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Approvals;

/// <summary>
/// Two real silo processes; each waiting run is decided through a client whose only gateway is the silo the run is
/// not active on, so the decision crosses from one silo to the other.
/// </summary>
public sealed class CrossSiloApprovalTests : IAsyncLifetime
{
    private const int Runs = 6;
    private SiloProcessCluster _cluster = null!;

    public async Task InitializeAsync() => _cluster = await SiloProcessCluster.StartAsync("approvals", 2);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task ADecisionFromAClientOfTheOtherSilo_ReachesTheRun_AndAWrongRoleIsRefusedThereToo()
    {
        var client = _cluster.Client;
        var ids = (await Task.WhenAll(Enumerable.Range(0, Runs).Select(i =>
            client.StartAsync("payout", new PayoutInput(100_00 + i, TimeoutSeconds: 600))))).Select(r => r.RunId).ToArray();
        foreach (var id in ids)
        {
            await Eventually.GetAsync(() => client.GetAsync(id), i => i.Status == RunStatus.AwaitingApproval, TimeSpan.FromSeconds(60), $"run {id} to wait for its approval");
        }

        var located = await _cluster.LocateRunsAsync(ids);
        Assert.Equal(Runs, located.Count);
        var gateways = _cluster.Silos.ToDictionary(s => s.Options.SiloPort, s => s.Options.GatewayPort);
        var clients = new Dictionary<int, (IHost Host, ISpineClient Client)>();
        try
        {
            foreach (var (siloPort, gatewayPort) in gateways)
            {
                clients[siloPort] = await PinnedClientAsync(_cluster.Silos[0].Options, gatewayPort);
            }

            foreach (var id in ids)
            {
                var other = gateways.Keys.Single(port => port != located[id]);
                var remote = clients[other].Client;

                // Refused with its type across the silos, and nothing changes.
                var forbidden = await Assert.ThrowsAsync<ApprovalForbiddenException>(() => remote.DecideApprovalAsync(id,
                    new ApprovalVerdict(true, "approver", "not mine to decide", Actor: new SpineActor("mallory", ["viewer"]))));
                Assert.Equal("mallory", forbidden.Actor);
                Assert.Equal(RunStatus.AwaitingApproval, (await remote.GetAsync(id)).Status);

                var decided = await remote.DecideApprovalAsync(id, new ApprovalVerdict(true, "approver", $"approved through :{other}", Actor: new SpineActor("dana", ["approver"])));
                Assert.NotEqual(RunStatus.AwaitingApproval, decided.Status);
            }

            foreach (var id in ids)
            {
                var output = await client.GetResultAsync<PayoutOutput>(id);
                Assert.True(output.Paid);
                Assert.Equal("dana", output.Decision.Actor!.Id);
                Assert.Equal($"approved through :{gateways.Keys.Single(port => port != located[id])}", output.Decision.Comment);
                var journal = await client.GetJournalAsync(id);
                Assert.Single(journal, r => r.Kind == "Approval");
            }

            // Each run was still active where it waited: the decision travelled to it, the run did not move to the client's silo.
            var after = await _cluster.LocateRunsAsync(ids);
            Assert.All(ids, id => Assert.Equal(located[id], after[id]));
            Assert.Equal((long)Runs, await _cluster.Postgres.ScalarAsync<long>("SELECT count(*) FROM spine_demo_ledger WHERE run_id = ANY(@ids)", ("ids", ids)));
        }
        finally
        {
            foreach (var (host, _) in clients.Values)
            {
                await TestProcesses.StopClientAsync(host);
            }
        }
    }

    /// <summary>A client that knows one gateway only: every call it makes enters the cluster through that silo.</summary>
    private static async Task<(IHost Host, ISpineClient Client)> PinnedClientAsync(Spine.Local.Silos.SiloProcessOptions cluster, int gatewayPort)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
        builder.Logging.ClearProviders();
        builder.UseOrleansClient(orleans =>
        {
            orleans.UseStaticClustering(new IPEndPoint(IPAddress.Loopback, gatewayPort));
            orleans.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = cluster.ClusterId;
                o.ServiceId = cluster.ServiceId;
            });
        });
        var host = builder.Build();
        await host.StartAsync();
        return (host, new SpineClient(host.Services.GetRequiredService<IClusterClient>()));
    }
}
