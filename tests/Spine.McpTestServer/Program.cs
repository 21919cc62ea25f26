// An MCP server over stdio for Spine's tests: `lookup` (its schema chosen by the variant file, watched while it runs:
// a change swaps the tool and tells the client its tool list changed),
// `die_once` (the process exits in the middle of the first call for a marker, and answers every later one) and
// `flaky_error` (answers with an MCP tool error).
using System.ComponentModel;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

var variantFile = args.Length > 0 ? args[0] : null;
var markers = args.Length > 1 ? args[1] : Path.GetTempPath();
string ReadVariant() => variantFile is not null && File.Exists(variantFile) ? File.ReadAllText(variantFile).Trim() : "1";

static McpServerTool Lookup(string variant) => variant == "2"
    ? McpServerTool.Create(
        ([Description("What to look up.")] string q, [Description("How many answers.")] int limit) => new LookupAnswer($"{q} (v2, {limit})"),
        new McpServerToolCreateOptions { Name = "lookup", Description = "Looks a term up (v2)." })
    : McpServerTool.Create(
        ([Description("What to look up.")] string q) => new LookupAnswer($"{q} (v1)"),
        new McpServerToolCreateOptions { Name = "lookup", Description = "Looks a term up." });

var variant = ReadVariant();
var lookup = Lookup(variant);

var dieOnce = McpServerTool.Create(
    ([Description("Names the call.")] string marker) =>
    {
        var file = Path.Combine(markers, "spine-mcp-died-" + marker);
        if (!File.Exists(file))
        {
            File.WriteAllText(file, "died");
            Environment.Exit(3);
        }

        return new LookupAnswer("survived " + marker);
    },
    new McpServerToolCreateOptions { Name = "die_once", Description = "Dies in the middle of its first call." });

var failing = McpServerTool.Create(
    (string why) => new CallToolResult { IsError = true, Content = [new TextContentBlock { Text = "refused: " + why }] },
    new McpServerToolCreateOptions { Name = "refuse", Description = "Answers with a tool error." });

var options = new McpServerOptions
{
    ServerInfo = new Implementation { Name = "spine-test", Version = "1.0.0" },
    ToolCollection = [lookup, dieOnce, failing],
};
await using var server = McpServer.Create(new StdioServerTransport("spine-test"), options);
using var stop = new CancellationTokenSource();
var watch = Task.Run(async () =>
{
    while (!stop.IsCancellationRequested)
    {
        await Task.Delay(100);
        var now = ReadVariant();
        if (now != variant)
        {
            variant = now;
            options.ToolCollection.Remove(lookup);
            lookup = Lookup(variant);
            options.ToolCollection.Add(lookup);
        }
    }
});
await server.RunAsync();
await stop.CancelAsync();

internal sealed record LookupAnswer(string Answer);
