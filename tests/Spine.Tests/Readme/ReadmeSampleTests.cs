// The README's workflow and tool samples, verbatim between the markers, plus what they assume.
using System.Collections.Concurrent;
using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Spine.Hosting;
using Spine.Local.Network;
using Spine.Runs;
using Spine.Tests.Infrastructure;
using Spine.Tools;
using Spine.Workflows;

namespace Spine.Tests.Readme;

public interface IPayments
{
    Task<string> RefundAsync(string orderId, decimal amount, string idempotencyKey);
}

/// <summary>A payment service that refunds once per idempotency key.</summary>
public sealed class FakePayments : IPayments
{
    public static ConcurrentDictionary<string, string> Refunds { get; } = new();

    public Task<string> RefundAsync(string orderId, decimal amount, string idempotencyKey) =>
        Task.FromResult(Refunds.GetOrAdd(idempotencyKey, _ => $"rf-{orderId}-{amount}"));
}

// README: workflow sample
public sealed record RefundRequest(string OrderId, decimal Amount, TimeSpan CoolingOff);
public sealed record RefundResult(string RefundId, string? Note);

[Workflow("refund", Version = 1)]
public sealed class RefundWorkflow(IPayments payments) : IWorkflow<RefundRequest, RefundResult>
{
    public async Task<RefundResult> RunAsync(IWorkflowContext ctx, RefundRequest input)
    {
        var order = await ctx.CallToolAsync("orders_lookup", JsonSerializer.SerializeToElement(new { id = input.OrderId }));
        var refundId = await ctx.RunAsync("issue-refund", step =>
            payments.RefundAsync(input.OrderId, input.Amount, idempotencyKey: step.IdempotencyKey));
        await ctx.SleepAsync(input.CoolingOff);                 // durable: survives restarts
        var reply = await ctx.CallModelAsync([new(ChatRole.User, $"Write a refund note for {order}")]);
        return new RefundResult(refundId, reply.Text);
    }
}
// README: end of workflow sample

// README: tool sample
public sealed class OrdersLookupTool : ITool
{
    public ToolDefinition Definition { get; } = new()
    {
        Name = "orders_lookup", Version = "1.2.0", Description = "Finds an order by id.",
        Effect = ToolEffect.ReadOnly,
        InputSchema = """{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}""",
        OutputSchema = """{"type":"object","properties":{"status":{"type":"string"}},"required":["status"]}""",
    };

    // ctx.IdempotencyKey for side effects; ctx.Secrets.Get(name) for secrets the definition declares (docs/secrets.md)
    public Task<JsonElement> InvokeAsync(JsonElement args, ToolContext ctx) =>
        Task.FromResult(JsonSerializer.SerializeToElement(new { status = "delivered" }));
}
// README: end of tool sample

/// <summary>The README's own-silo-host sample, compiled here and started by a test.</summary>
public static class OwnSiloHost
{
    public static IHost Build(string connectionString, int siloPort, int gatewayPort)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<IPayments, FakePayments>();
        var cluster = "readme-" + Guid.NewGuid().ToString("N")[..12];
        builder.Services.Configure<ClusterOptions>(o => (o.ClusterId, o.ServiceId) = (cluster, cluster));
        builder.Configuration["Spine:Audit:Key"] = TestAudit.Key;   // the README's appsettings name a key file
        builder.Configuration[TestSpine.SharedDatabaseSetting] = TestSpine.SharedDatabaseValue;
// README: host sample
builder.UseOrleans(silo =>
{
    silo.ConfigureEndpoints(IPAddress.Loopback, siloPort, gatewayPort);
    silo.UseAdoNetClustering(o =>
    {
        o.Invariant = "Npgsql";
        o.ConnectionString = connectionString;
    });
    silo.AddSpine(connectionString, builder.Configuration.GetSection("Spine"));
});
builder.Services.AddSpineWorkflow<RefundWorkflow, RefundRequest, RefundResult>();
builder.Services.AddSpineTool<OrdersLookupTool>();
// A typed tool: its schemas come from the method's parameters and return type, its arguments bind to them.
builder.Services.AddSpineTool(
    ([Description("The order id.")][StringLength(40, MinimumLength = 1)] string id) => new OrderStatus("delivered"),
    new TypedToolOptions { Name = "orders_status", Version = "1.0.0", Description = "Tells an order's status.", Effect = ToolEffect.ReadOnly });
// README: end of host sample
        return builder.Build();
    }
}

/// <summary>What the README's typed tool answers.</summary>
public sealed record OrderStatus(string Status);

[Collection(ClusterCollection.Name)]
public sealed class ReadmeSampleTests(ClusterFixture fixture)
{
    [Fact]
    public async Task ReadmeRefundWorkflow_Runs_ToCompletionWithOneRefund()
    {
        var run = await fixture.Client.StartAsync("refund", new RefundRequest("o-17", 25m, TimeSpan.FromMilliseconds(200)), idempotencyKey: Guid.NewGuid().ToString(), accountId: "acme");

        var result = await fixture.Client.GetResultAsync<RefundResult>(run.RunId);

        Assert.Equal("rf-o-17-25", result.RefundId);
        Assert.False(string.IsNullOrEmpty(result.Note));
        Assert.Equal("rf-o-17-25", FakePayments.Refunds[$"{run.RunId}/2"]);
        var kinds = (await fixture.Client.GetJournalAsync(run.RunId)).Select(r => r.Kind);
        // The run is billed to an account: its model call reserves in the account's budget, and settles with its outcome.
        Assert.Equal(["RunStarted", "Tool", "Step", "Timer", "TimerFired", "BudgetReserved", "BudgetSettled", "Model", "RunCompleted"], kinds);
    }

    [Fact]
    public void ReadmeSamples_AreTheReadmeCode()
    {
        var readme = File.ReadAllText(Path.Combine(Local.RepositoryRoot.Find(), "README.md"));
        var self = File.ReadAllText(Path.Combine(Local.RepositoryRoot.Find(), "tests", "Spine.Tests", "Readme", "ReadmeSampleTests.cs"));

        Assert.Contains(Between(self, "// README: workflow sample\n", "// README: end of workflow sample"), readme, StringComparison.Ordinal);
        Assert.Contains(Between(self, "// README: tool sample\n", "// README: end of tool sample"), readme, StringComparison.Ordinal);
        Assert.Contains(Between(self, "// README: host sample\n", "// README: end of host sample"), readme, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OwnSiloHost_ReferencingOnlyTheLibrary_StartsAndServesTheReadmeWorkflow()
    {
        using var host = OwnSiloHost.Build(fixture.Postgres.RuntimeConnectionString, LoopbackPorts.FreePort(), LoopbackPorts.FreePort());

        await host.StartAsync();
        try
        {
            var registry = host.Services.GetRequiredService<WorkflowRegistry>();
            Assert.NotNull(registry.Resolve("refund", null));
            Assert.NotNull(host.Services.GetRequiredService<ToolRegistry>().Resolve("orders_lookup", null));
            Assert.Contains("\"maxLength\":40", host.Services.GetRequiredService<ToolRegistry>().Resolve("orders_status", null).Definition.InputSchema, StringComparison.Ordinal);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    private static string Between(string text, string start, string end)
    {
        var from = text.IndexOf(start, StringComparison.Ordinal) + start.Length;
        return text[from..text.IndexOf(end, from, StringComparison.Ordinal)];
    }
}
