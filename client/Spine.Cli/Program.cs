using System.CommandLine;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Spine.Client;
using Spine.Errors;
using Spine.Runs;

// spine: the operator CLI over ISpineClient. Every command takes --json for scripts.
var json = new Option<bool>("--json") { Description = "Print JSON instead of text.", Recursive = true };
var connection = new Option<string?>("--connection")
{
    Description = "PostgreSQL connection string of the cluster (default: $SPINE_CONNECTION).",
    Recursive = true,
    DefaultValueFactory = _ => Environment.GetEnvironmentVariable("SPINE_CONNECTION"),
};
var cluster = new Option<string>("--cluster")
{
    Description = "Orleans cluster id (default: $SPINE_CLUSTER_ID or 'spine').",
    Recursive = true,
    DefaultValueFactory = _ => Environment.GetEnvironmentVariable("SPINE_CLUSTER_ID") ?? "spine",
};
var service = new Option<string>("--service")
{
    Description = "Orleans service id (default: $SPINE_SERVICE_ID or 'spine').",
    Recursive = true,
    DefaultValueFactory = _ => Environment.GetEnvironmentVariable("SPINE_SERVICE_ID") ?? "spine",
};
var runId = new Argument<string>("run-id") { Description = "The run id." };

var root = new RootCommand("Spine operator CLI: start, inspect and control durable workflow runs.");
root.Options.Add(json);
root.Options.Add(connection);
root.Options.Add(cluster);
root.Options.Add(service);

var workflowType = new Argument<string>("workflow-type") { Description = "The registered workflow type, e.g. agent." };
var input = new Option<string>("--input") { Description = "The input as JSON.", DefaultValueFactory = _ => "{}" };
var key = new Option<string?>("--key") { Description = "Idempotency key: starting the same key twice returns the same run." };
var account = new Option<string?>("--account") { Description = "The account the run belongs to." };
var version = new Option<int?>("--version") { Description = "Workflow version (default: newest)." };
var wait = new Option<bool>("--wait") { Description = "Wait for the run to finish." };
var start = new Command("start", "Start a run.") { workflowType, input, key, account, version, wait };
start.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var info = await client.StartAsync(new StartRunRequest(parse.GetValue(workflowType)!, parse.GetValue(input)!, parse.GetValue(version), parse.GetValue(key), parse.GetValue(account)), ct);
    if (parse.GetValue(wait))
    {
        info = await client.WaitAsync(info.RunId, null, ct);
    }

    return Print(parse, info, RunText(info), info.Status == RunStatus.Failed ? 1 : 0);
}));

var status = new Command("status", "Show a run.") { runId };
status.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var info = await client.GetAsync(parse.GetValue(runId)!, ct);
    return Print(parse, info, RunText(info));
}));

var timeout = new Option<int?>("--timeout") { Description = "Give up after this many seconds." };
var result = new Command("result", "Wait for a run and print its result.") { runId, timeout };
result.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var seconds = parse.GetValue(timeout);
    var info = await client.WaitAsync(parse.GetValue(runId)!, seconds is null ? null : TimeSpan.FromSeconds(seconds.Value), ct);
    return Print(parse, info, info.Status == RunStatus.Completed ? info.ResultJson ?? "" : RunText(info), info.Status == RunStatus.Completed ? 0 : 1);
}));

var reason = new Option<string?>("--reason") { Description = "Why the run is cancelled." };
var cancel = new Command("cancel", "Cancel a run at its next step boundary.") { runId, reason };
cancel.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var info = await client.CancelAsync(parse.GetValue(runId)!, parse.GetValue(reason), ct);
    return Print(parse, info, RunText(info));
}));

var statusFilter = new Option<RunStatus?>("--status") { Description = "Only runs in this status." };
var typeFilter = new Option<string?>("--type") { Description = "Only runs of this workflow type." };
var limit = new Option<int>("--limit") { Description = "At most this many runs.", DefaultValueFactory = _ => 50 };
var list = new Command("list", "List runs, newest first.") { statusFilter, typeFilter, account, limit };
list.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var runs = await client.ListAsync(new RunQuery { Status = parse.GetValue(statusFilter), WorkflowType = parse.GetValue(typeFilter), AccountId = parse.GetValue(account), Limit = parse.GetValue(limit) }, ct);
    return Print(parse, runs, string.Join(Environment.NewLine, runs.Select(RunText)));
}));

var journal = new Command("journal", "Print a run's journal.") { runId };
journal.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var rows = await client.GetJournalAsync(parse.GetValue(runId)!, ct);
    return Print(parse, rows, string.Join(Environment.NewLine, rows.Select(r => $"{r.Seq,4} {r.Kind,-15} {r.Name,-20} {r.Outcome,-5} {r.RecordedAt:O} {r.PayloadJson}")));
}));

var verify = new Command("verify", "Recompute a run's journal hash chain (tamper check).") { runId };
verify.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var check = await client.VerifyJournalAsync(parse.GetValue(runId)!, ct);
    return Print(parse, check, check.Intact ? $"{check.RunId}: {check.Rows} rows, hash chain intact" : $"{check.RunId}: BROKEN at row {check.FirstBadSeq}: {check.Problem}", check.Intact ? 0 : 3);
}));
var audit = new Command("audit", "Audit commands.") { verify };

foreach (var command in new[] { start, status, result, cancel, list, journal })
{
    root.Subcommands.Add(command);
}

root.Subcommands.Add(audit);
return await root.Parse(args).InvokeAsync();

async Task<int> WithClientAsync(ParseResult parse, Func<ISpineClient, Task<int>> action)
{
    var connectionString = parse.GetValue(connection);
    if (string.IsNullOrWhiteSpace(connectionString))
    {
        return Fail(parse, "configuration", "no connection string: pass --connection or set SPINE_CONNECTION", 2);
    }

    var builder = Host.CreateApplicationBuilder();
    builder.Logging.ClearProviders();
    builder.Services.AddSpineClient(o =>
    {
        o.ConnectionString = connectionString;
        o.ClusterId = parse.GetValue(cluster)!;
        o.ServiceId = parse.GetValue(service)!;
    });
    using var host = builder.Build();
    try
    {
        await host.StartAsync();
        return await action(host.Services.GetRequiredService<ISpineClient>());
    }
    catch (SpineException e)
    {
        return Fail(parse, e.Kind, e.Message, 1);
    }
    catch (Exception e) when (e is OrleansException or TimeoutException or System.Net.Sockets.SocketException)
    {
        return Fail(parse, "cluster_unreachable", e.Message, 2);
    }
    finally
    {
        await host.StopAsync();
    }
}

static int Print<T>(ParseResult parse, T value, string text, int exitCode = 0)
{
    Console.WriteLine(parse.GetValue<bool>("--json") ? JsonSerializer.Serialize(value, CliJson.Options) : text);
    return exitCode;
}

static int Fail(ParseResult parse, string kind, string message, int exitCode)
{
    if (parse.GetValue<bool>("--json"))
    {
        Console.WriteLine(JsonSerializer.Serialize(new { error = new { kind, message } }, CliJson.Options));
    }
    else
    {
        Console.Error.WriteLine($"error ({kind}): {message}");
    }

    return exitCode;
}

static string RunText(RunInfo r) =>
    $"{r.RunId}  {r.WorkflowType} v{r.WorkflowVersion}  {r.Status}  steps={r.StepsRecorded}  created={r.CreatedAt:O}" +
    (r.Error is null ? "" : $"  error={r.Error.Kind}: {r.Error.Message}");

internal static class CliJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
    };
}
