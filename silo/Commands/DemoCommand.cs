using System.Diagnostics;
using System.Text.Json;
using Spine.Agents;
using Spine.Client;
using Spine.Runs;
using Spine.Local;
using Spine.Local.Network;
using Spine.Local.Postgres;
using Spine.Local.Silos;
using Spine.Silo.Demo;
using Spine.Silo.Hosting;
using Spine.Storage;

namespace Spine.Silo.Commands;

/// <summary>
/// The quick-start demo: starts the embedded PostgreSQL, a silo process, a batch of agent and ledger
/// runs, kills the silo with SIGKILL while they are mid-step, starts a new silo, and shows every run
/// finishing with each side effect applied exactly once.
/// </summary>
internal static class DemoCommand
{
    private const int AgentRuns = 4;
    private const int LedgerRuns = 24;
    private const int LedgerSteps = 6;

    /// <summary>The embedded PostgreSQL's port: a silo's default <c>Silo:LocalPostgresPort</c>, so that both share .pgdata/.</summary>
    public static int DefaultPostgresPort { get; } = new SiloSettings().LocalPostgresPort;

    /// <summary>The dashboard's port: a silo's default <c>Silo:DashboardPort</c>.</summary>
    public static int DefaultDashboardPort { get; } = new SiloSettings().DashboardPort;

    /// <summary>Runs the demo; returns the process exit code.</summary>
    public static async Task<int> RunAsync(int postgresPort, int dashboardPort, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        void Say(string text) => Console.WriteLine($"[{clock.Elapsed.TotalSeconds,6:F1}s] {text}");

        var dataDirectory = Path.Combine(RepositoryRoot.Find(), ".pgdata");
        Say($"starting PostgreSQL (data in {dataDirectory})");
        await using var postgres = await LocalPostgresServer.StartAsync(new LocalPostgresOptions { DataDirectory = dataDirectory, Port = postgresPort }, ct: cancellationToken);
        var runtime = await SpineDatabaseSetup.ApplySchemaAsync(postgres.ConnectionString, includeDemo: true, cancellationToken);
        Say($"PostgreSQL ready on 127.0.0.1:{postgres.Port}; schema applied ({string.Join(", ", SchemaMigrator.Scripts(includeDemo: true).Select(s => s.Name))})");

        var clusterId = $"demo-{DateTime.UtcNow:yyyyMMddHHmmss}";
        var options = new SiloProcessOptions
        {
            AuditKey = LocalAuditKey.Read(dataDirectory),
            Demo = true,
            ConnectionString = runtime,
            ClusterId = clusterId,
            SiloPort = LoopbackPorts.FreePort(),
            GatewayPort = LoopbackPorts.FreePort(),
            DashboardPort = dashboardPort,
            ResumeReminderPeriod = TimeSpan.FromSeconds(2),
            OnOutput = line => Console.WriteLine($"         silo | {line}"),
        };

        Say("starting silo #1 (a separate process)");
        var silo = SiloProcess.Start(options);
        await silo.WaitReadyAsync(TimeSpan.FromSeconds(90), cancellationToken);
        Say($"silo #1 is up (pid {silo.ProcessId}); dashboard at http://127.0.0.1:{options.DashboardPort}/dashboard/");

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("Orleans", LogLevel.Error);
        builder.Services.AddSpineClient(o =>
        {
            o.ConnectionString = runtime;
            o.ClusterId = clusterId;
        });
        using var host = builder.Build();
        await host.StartAsync();
        var client = host.Services.GetRequiredService<ISpineClient>();

        var runIds = new List<string>();
        string[] prompts =
        [
            "What is (1200 + 34) * 3, and how long is this question?",
            "Compute 19.99 * 12 for a yearly plan.",
            "Split 1000 / 8 among the team.",
            "How much is 2 * (3 + 4) * 5?",
        ];
        for (var i = 0; i < AgentRuns; i++)
        {
            var run = await client.StartAsync("agent", new AgentInput(prompts[i], Tools: ["calculator", "text_stats", "notes_append"]), idempotencyKey: $"{clusterId}-agent-{i}", accountId: "demo");
            runIds.Add(run.RunId);
        }

        for (var i = 0; i < LedgerRuns; i++)
        {
            var run = await client.StartAsync("ledger", new LedgerInput(LedgerSteps, 400), idempotencyKey: $"{clusterId}-ledger-{i}", accountId: "demo");
            runIds.Add(run.RunId);
        }

        Say($"started {AgentRuns} agent runs and {LedgerRuns} ledger runs ({LedgerSteps} side-effecting steps of 400 ms each)");
        await ProgressAsync(client, runIds, Say, until: infos => infos.Sum(i => i.StepsRecorded) >= LedgerRuns * 2);

        Say($"killing silo #1 (pid {silo.ProcessId}) with SIGKILL while runs are mid-step");
        await silo.KillAsync();
        await silo.DisposeAsync();

        Say("starting silo #2 on the same endpoints; it resumes every unfinished run from its journal");
        silo = SiloProcess.Start(options);
        await using (silo)
        {
            await silo.WaitReadyAsync(TimeSpan.FromSeconds(90), cancellationToken);
            Say($"silo #2 is up (pid {silo.ProcessId})");
            await ProgressAsync(client, runIds, Say, until: infos => infos.All(i => i.Status.IsTerminal()));

            var infos = new List<RunInfo>();
            foreach (var id in runIds)
            {
                infos.Add(await client.GetAsync(id));
            }

            var agent = infos[0];
            var output = JsonSerializer.Deserialize<AgentOutput>(agent.ResultJson!, new JsonSerializerOptions(JsonSerializerDefaults.Web))!;
            Say($"agent run {agent.RunId}: {output.Turns} model turns, {output.ToolCalls.Count} tool calls, {output.InputTokens}+{output.OutputTokens} tokens");
            Say($"  answer: {output.Answer}");
            foreach (var row in await client.GetJournalAsync(agent.RunId))
            {
                Say($"  journal #{row.Seq,-2} {row.Kind,-12} {row.Name,-14} {row.Outcome,-5} {Truncate(row.PayloadJson, 70)}");
            }

            var verification = await client.VerifyJournalAsync(agent.RunId);
            Say($"  hash chain of its {verification.Rows} journal rows: {(verification.Intact ? "intact" : "BROKEN: " + verification.Problem)}");

            var (effects, deliveries, duplicates) = await LedgerAsync(runtime, clusterId);
            var completed = infos.Count(i => i.Status == RunStatus.Completed);
            Say($"runs: {completed}/{infos.Count} completed; ledger: {effects} effects for {LedgerRuns * LedgerSteps} steps, " +
                $"{deliveries - effects} repeated deliveries absorbed by idempotency keys, {duplicates} applied twice");
            var ok = completed == infos.Count && effects == LedgerRuns * LedgerSteps && duplicates == 0 && verification.Intact;
            Say(ok ? "demo finished: every run survived the killed silo, every side effect happened exactly once"
                   : "demo finished WITH PROBLEMS (see above)");

            await host.StopAsync();
            Say("stopping silo #2 gracefully");
            await silo.StopAsync(TimeSpan.FromSeconds(30));
            return ok ? 0 : 1;
        }
    }

    private static async Task ProgressAsync(ISpineClient client, List<string> runIds, Action<string> say, Func<List<RunInfo>, bool> until)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        while (DateTime.UtcNow < deadline)
        {
            var infos = new List<RunInfo>();
            try
            {
                foreach (var id in runIds)
                {
                    infos.Add(await client.GetAsync(id));
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                say($"progress: cluster not reachable yet ({e.GetType().Name})");
                await Task.Delay(1000);
                continue;
            }

            var byStatus = infos.GroupBy(i => i.Status).OrderBy(g => g.Key).Select(g => $"{g.Count()} {g.Key}");
            say($"progress: {string.Join(", ", byStatus)}; {infos.Sum(i => i.StepsRecorded)} steps recorded");
            if (until(infos))
            {
                return;
            }

            await Task.Delay(700);
        }

        throw new TimeoutException("The demo runs did not finish within 3 minutes.");
    }

    private static async Task<(long Effects, long Deliveries, long Duplicates)> LedgerAsync(string connectionString, string clusterId)
    {
        await using var data = Npgsql.NpgsqlDataSource.Create(connectionString);
        await using var command = data.CreateCommand("""
            SELECT count(*), coalesce(sum(deliveries), 0),
                   count(*) - count(DISTINCT (run_id, step))
            FROM spine_demo_ledger WHERE run_id = ANY(@runs)
            """);
        var runs = Enumerable.Range(0, LedgerRuns).Select(i => RunIds.FromIdempotencyKey("demo", $"{clusterId}-ledger-{i}")).ToArray();
        command.Parameters.AddWithValue("runs", runs);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    }

    private static string Truncate(string? text, int length) =>
        text is null ? "" : text.Length <= length ? text : text[..length] + "…";
}
