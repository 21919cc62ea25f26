using System.Diagnostics;
using System.Text.Json;
using Npgsql;
using Spine.Local.Network;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Client;

/// <summary>The real <c>spine</c> executable against a real silo process.</summary>
[Collection(SiloProcessCollection.Name)]
public sealed class CliTests(SiloProcessFixture fixture)
{
    [Fact]
    public async Task Start_WithJsonAndWait_PrintsCompletedRun()
    {
        var key = Guid.NewGuid().ToString();

        var (exit, output) = await SpineAsync("start", "ledger", "--input", "{\"steps\":2,\"stepMilliseconds\":0}", "--key", key, "--account", "cli", "--wait", "--json");

        Assert.Equal(0, exit);
        using var run = JsonDocument.Parse(output);
        Assert.Equal("Completed", run.RootElement.GetProperty("status").GetString());
        Assert.Equal(2, run.RootElement.GetProperty("stepsRecorded").GetInt32());
        var runId = run.RootElement.GetProperty("runId").GetString()!;

        var (listExit, list) = await SpineAsync("list", "--account", "cli", "--type", "ledger", "--json");
        Assert.Equal(0, listExit);
        Assert.Contains(JsonDocument.Parse(list).RootElement.EnumerateArray(), r => r.GetProperty("runId").GetString() == runId);

        var (verifyExit, verify) = await SpineAsync("audit", "verify", "--run", runId, "--json");
        Assert.Equal(0, verifyExit);
        Assert.True(JsonDocument.Parse(verify).RootElement.GetProperty("intact").GetBoolean());
    }

    [Fact]
    public async Task Signal_JournalsThePayloadAndItsSender_AndAnUnknownRunFailsTyped()
    {
        var run = await fixture.Client.StartAsync("ledger", new { steps = 30, stepMilliseconds = 500 });

        var (exit, output) = await SpineAsync("signal", run.RunId, "nudge", "--payload", "{\"n\":1}", "--id", "s-1", "--as", "carol", "--role", "operator", "--json");
        var (unknownExit, unknown) = await SpineAsync("signal", "r-doesnotexist", "nudge", "--json");
        var journal = await fixture.Client.GetJournalAsync(run.RunId);
        await fixture.Client.CancelAsync(run.RunId);

        Assert.Equal(0, exit);
        Assert.Equal(run.RunId, JsonDocument.Parse(output).RootElement.GetProperty("runId").GetString());
        var received = JsonDocument.Parse(journal.Single(r => r.Kind == "SignalReceived").PayloadJson!).RootElement;
        Assert.Equal(1, received.GetProperty("payload").GetProperty("n").GetInt32());
        Assert.Equal("s-1", received.GetProperty("id").GetString());
        Assert.Equal("carol", received.GetProperty("actor").GetProperty("id").GetString());
        Assert.Equal(1, unknownExit);
        Assert.Equal("run_not_found", JsonDocument.Parse(unknown).RootElement.GetProperty("error").GetProperty("kind").GetString());
    }

    [Fact]
    public async Task Approvals_ListRefuseApprove_ThroughTheCli()
    {
        var account = "cli-" + Guid.NewGuid().ToString("N");
        var run = await fixture.Client.StartAsync("payout", new { amount = 1200, approverRole = "approver" }, accountId: account);

        // The listing reads the index: wait for the index, not the run's snapshot, to say it waits.
        await Eventually.GetAsync(() => fixture.Postgres.ScalarAsync<short>("SELECT status FROM spine_runs WHERE run_id = @id", ("id", run.RunId)),
            s => s == (short)Spine.Runs.RunStatus.AwaitingApproval, TimeSpan.FromSeconds(30), "the index to show the run waiting for its approval");

        var (listExit, list) = await SpineAsync("approvals", "list", "--account", account, "--role", "approver", "--json");
        var (forbiddenExit, forbidden) = await SpineAsync("approvals", "approve", run.RunId, "--as", "dave", "--role", "viewer", "--json");
        var (approveExit, approve) = await SpineAsync("approvals", "approve", run.RunId, "--as", "dave", "--role", "approver", "--comment", "ok by me", "--json");
        var (againExit, again) = await SpineAsync("approvals", "reject", run.RunId, "--as", "dave", "--role", "approver", "--json");
        var done = await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));

        Assert.Equal(0, listExit);
        Assert.Equal(run.RunId, Assert.Single(JsonDocument.Parse(list).RootElement.EnumerateArray()).GetProperty("runId").GetString());
        Assert.Equal(1, forbiddenExit);
        Assert.Equal("approval_forbidden", JsonDocument.Parse(forbidden).RootElement.GetProperty("error").GetProperty("kind").GetString());
        Assert.Equal(0, approveExit);
        Assert.Equal(run.RunId, JsonDocument.Parse(approve).RootElement.GetProperty("runId").GetString());
        Assert.Equal(1, againExit);
        Assert.Equal("approval_not_pending", JsonDocument.Parse(again).RootElement.GetProperty("error").GetProperty("kind").GetString());
        Assert.Equal(Spine.Runs.RunStatus.Completed, done.Status);
        Assert.Contains("\"paid\":true", done.ResultJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PoliciesShow_PrintsWhatTheSiloEnforces()
    {
        var (exit, output) = await SpineAsync("policies", "show", "--json");
        var (textExit, text) = await SpineAsync("policies", "show");

        Assert.Equal(0, exit);
        var set = JsonDocument.Parse(output).RootElement;
        Assert.False(set.GetProperty("denyByDefault").GetBoolean());
        Assert.Equal(JsonValueKind.Array, set.GetProperty("rules").ValueKind);
        Assert.Equal(0, textExit);
        Assert.StartsWith("deny-by-default=False", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LimitsShow_PrintsTheConfiguredRateLimits()
    {
        var (exit, output) = await SpineAsync("limits", "show", "--json");
        var (textExit, text) = await SpineAsync("limits", "show");

        Assert.Equal(0, exit);
        var calculator = JsonDocument.Parse(output).RootElement.EnumerateArray().Single(l => l.GetProperty("name").GetString() == "tool:calculator/requests");
        Assert.Equal(100, calculator.GetProperty("perSecond").GetDouble());
        Assert.Equal(10, calculator.GetProperty("capacity").GetDouble());
        Assert.Equal(0, textExit);
        Assert.Contains("tool:calculator/requests: tool calculator 100 requests/s burst=10", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ToolsListAndShow_PrintVersionsAndSchemas_AndAnUnknownToolIsATypedError()
    {
        var (exit, output) = await SpineAsync("tools", "list", "--json");
        var (showExit, show) = await SpineAsync("tools", "show", "calculator");
        var (unknownExit, unknown) = await SpineAsync("tools", "show", "no_such_tool", "--json");

        Assert.Equal(0, exit);
        var calculator = JsonDocument.Parse(output).RootElement.EnumerateArray().Single(t => t.GetProperty("name").GetString() == "calculator");
        var version = Assert.Single(calculator.GetProperty("versions").EnumerateArray());
        Assert.True(version.GetProperty("registered").GetBoolean());
        Assert.Equal(calculator.GetProperty("newest").GetString(), version.GetProperty("version").GetString());
        Assert.Equal(0, showExit);
        Assert.Contains(": registered here effect=", show, StringComparison.Ordinal);
        Assert.Contains("input:  {", show, StringComparison.Ordinal);
        Assert.Equal(1, unknownExit);
        Assert.Equal("unknown_tool", JsonDocument.Parse(unknown).RootElement.GetProperty("error").GetProperty("kind").GetString());
    }

    [Fact]
    public async Task Watch_FollowsARunLive_StepByStepWithLatency_UntilItEnds()
    {
        var run = await fixture.Client.StartAsync("ledger", new Spine.Silo.Demo.LedgerInput(3, StepMilliseconds: 300));

        var (exit, output) = await SpineAsync("watch", run.RunId);
        var (unknownExit, unknown) = await SpineAsync("watch", "r-doesnotexist", "--json");

        Assert.Equal(0, exit);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(lines, l => l.Contains("RunStarted", StringComparison.Ordinal));
        for (var step = 1; step <= 3; step++)
        {
            // Each step's outcome, with how long it took.
            Assert.Contains(lines, l => l.Contains($" {step} Step ", StringComparison.Ordinal) && l.Contains(" ms", StringComparison.Ordinal));
        }

        Assert.Contains(lines, l => l.Contains("RunCompleted", StringComparison.Ordinal));
        Assert.Contains("Completed", lines[^1], StringComparison.Ordinal);
        Assert.Equal(1, unknownExit);
        Assert.Equal("run_not_found", JsonDocument.Parse(unknown.Trim().Split('\n')[^1]).RootElement.GetProperty("error").GetProperty("kind").GetString());
    }

    [Fact]
    public async Task Slo_PrintsEachWorkflowTypesWindows()
    {
        var run = await fixture.Client.StartAsync("ledger", new Spine.Silo.Demo.LedgerInput(1));
        await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));

        var (exit, output) = await SpineAsync("slo", "--workflow", "ledger", "--json");
        var (textExit, text) = await SpineAsync("slo");

        Assert.Equal(0, exit);
        var ledger = Assert.Single(JsonDocument.Parse(output).RootElement.EnumerateArray());
        Assert.Equal(3, ledger.GetProperty("windows").GetArrayLength());
        Assert.True(ledger.GetProperty("windows")[0].GetProperty("succeeded").GetInt64() >= 1);
        Assert.Equal(0, textExit);
        Assert.Contains("ledger: target=", text, StringComparison.Ordinal);
        Assert.Contains("success-rate=", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Budgets_SetShowAndBadInput_ThroughTheCli()
    {
        var account = "cli-" + Guid.NewGuid().ToString("N");

        var (unknownExit, unknown) = await SpineAsync("budgets", "show", account, "--json");
        var (negativeExit, negative) = await SpineAsync("budgets", "set", account, "--daily-tokens", "-5", "--json");
        var (setExit, set) = await SpineAsync("budgets", "set", account, "--daily-tokens", "1000", "--total-cost", "12.5", "--as", "ops", "--json");
        var (showExit, show) = await SpineAsync("budgets", "show", account);

        Assert.Equal(1, unknownExit);
        Assert.Equal("unknown_account", JsonDocument.Parse(unknown).RootElement.GetProperty("error").GetProperty("kind").GetString());
        Assert.Equal(1, negativeExit);
        Assert.Equal("invalid_payload", JsonDocument.Parse(negative).RootElement.GetProperty("error").GetProperty("kind").GetString());
        Assert.Equal(0, setExit);
        var view = JsonDocument.Parse(set).RootElement;
        Assert.Equal(1000, view.GetProperty("ceilings").GetProperty("dailyTokens").GetInt64());
        Assert.Equal(1000, view.GetProperty("remainingTokens").GetInt64());
        Assert.Equal(0, showExit);
        Assert.Contains("ceilings: daily tokens=1000", show, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_UnknownRun_PrintsTypedJsonErrorAndFails()
    {
        var (exit, output) = await SpineAsync("status", "r-doesnotexist", "--json");

        Assert.Equal(1, exit);
        Assert.Equal("run_not_found", JsonDocument.Parse(output).RootElement.GetProperty("error").GetProperty("kind").GetString());
    }

    [Fact]
    public async Task Start_UnknownWorkflow_PrintsTypedJsonErrorAndFails()
    {
        var (exit, output) = await SpineAsync("start", "no.such.workflow", "--json");

        Assert.Equal(1, exit);
        Assert.Equal("unknown_workflow", JsonDocument.Parse(output).RootElement.GetProperty("error").GetProperty("kind").GetString());
    }

    [Fact]
    public async Task DeadLetterQueue_ListShowReplayDiscard_ThroughTheCli()
    {
        var run = await fixture.Client.StartAsync("chaos", new { steps = 1, failureRate = 0, failFirst = 5, retryDelayMilliseconds = 10, maxAttempts = 2 });
        await Eventually.GetAsync(() => fixture.Client.GetAsync(run.RunId), i => i.Status == Spine.Runs.RunStatus.DeadLettered, TimeSpan.FromSeconds(30), "the run to be dead-lettered");

        var (listExit, list) = await SpineAsync("dlq", "list", "--json");
        var (showExit, show) = await SpineAsync("dlq", "show", run.RunId, "--json");
        var (replayExit, replay) = await SpineAsync("dlq", "replay", run.RunId, "--input", "{\"steps\":1,\"failFirst\":0}", "--wait", "--json");
        var (discardExit, discard) = await SpineAsync("dlq", "discard", run.RunId, "--reason", "replayed", "--json");

        Assert.Equal(0, listExit);
        var listed = JsonDocument.Parse(list).RootElement.EnumerateArray().Single(r => r.GetProperty("runId").GetString() == run.RunId);
        Assert.Equal(1, listed.GetProperty("error").GetProperty("step").GetInt32());
        Assert.Equal(0, showExit);
        Assert.Contains(JsonDocument.Parse(show).RootElement.GetProperty("journal").EnumerateArray(), r => r.GetProperty("kind").GetString() == "AttemptFailed");
        Assert.Equal(0, replayExit);
        var replayed = JsonDocument.Parse(replay).RootElement;
        Assert.Equal("Completed", replayed.GetProperty("status").GetString());
        Assert.Equal(run.RunId, replayed.GetProperty("origin").GetProperty("sourceRunId").GetString());
        Assert.Equal(0, discardExit);
        Assert.Equal("Discarded", JsonDocument.Parse(discard).RootElement.GetProperty("status").GetString());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AnyCommand_ClusterWithNoSilo_FailsWithinConnectTimeoutAsClusterUnavailable(bool json)
    {
        var run = await RunSpineAsync(["status", "r-doesnotexist", "--connect-timeout", "3", .. (json ? ["--json"] : Array.Empty<string>())],
            cluster: "absent-" + Guid.NewGuid().ToString("N")[..12]);

        Assert.Equal(2, run.Exit);
        AssertOneError(run, json, "cluster_unavailable");
        Assert.True(run.Elapsed < TimeSpan.FromSeconds(30), $"took {run.Elapsed}, with a bound of 3 s");
    }

    [Fact]
    public async Task AnyCommand_OnlyADeadSiloInTheMembershipTable_FailsWithinConnectTimeoutAsClusterUnavailable()
    {
        // What a SIGKILLed silo leaves behind: a row still marked active (3) whose gateway port nobody listens on.
        var clusterId = "dead-" + Guid.NewGuid().ToString("N")[..12];
        await fixture.Postgres.ScalarAsync<int>("""
            WITH version AS (INSERT INTO orleansmembershipversiontable (deploymentid, version) VALUES (@cluster, 1) RETURNING deploymentid)
            INSERT INTO orleansmembershiptable (deploymentid, address, port, generation, siloname, hostname, status, proxyport, starttime, iamalivetime)
            SELECT deploymentid, '127.0.0.1', @port, 1, 'killed', 'localhost', 3, @port, now(), now() FROM version RETURNING status
            """, ("cluster", clusterId), ("port", LoopbackPorts.FreePort()));
        try
        {
            var run = await RunSpineAsync(["list", "--json"], cluster: clusterId, environment: new() { ["SPINE_CONNECT_TIMEOUT"] = "3" });

            Assert.Equal(2, run.Exit);
            AssertOneError(run, json: true, "cluster_unavailable");
            Assert.True(run.Elapsed < TimeSpan.FromSeconds(30), $"took {run.Elapsed}, with a bound of 3 s");
        }
        finally
        {
            await fixture.Postgres.ScalarAsync<long>("WITH gone AS (DELETE FROM orleansmembershipversiontable WHERE deploymentid = @cluster RETURNING 1) SELECT count(*) FROM gone", ("cluster", clusterId));
        }
    }

    [Theory]
    [InlineData("closed port", "storage_unavailable")]
    [InlineData("unknown login", "storage_unavailable")]
    [InlineData("malformed", "configuration")]
    public async Task AnyCommand_BadDatabaseSettings_PrintsOneTypedErrorInTextAndJson(string problem, string kind)
    {
        var builder = new NpgsqlConnectionStringBuilder(fixture.Postgres.RuntimeConnectionString);
        var connection = problem switch
        {
            "closed port" => new NpgsqlConnectionStringBuilder(builder.ConnectionString) { Port = LoopbackPorts.FreePort() }.ConnectionString,
            "unknown login" => new NpgsqlConnectionStringBuilder(builder.ConnectionString) { Username = "nobody_" + Guid.NewGuid().ToString("N")[..8] }.ConnectionString,
            _ => $"Host={builder.Host};Port=not-a-port",
        };

        var text = await RunSpineAsync(["status", "r-doesnotexist"], connection: connection, environment: new() { ["SPINE_CONNECT_TIMEOUT"] = "3" });
        var json = await RunSpineAsync(["status", "r-doesnotexist", "--json"], connection: connection, environment: new() { ["SPINE_CONNECT_TIMEOUT"] = "3" });

        Assert.Equal(2, text.Exit);
        AssertOneError(text, json: false, kind);
        Assert.Equal(2, json.Exit);
        AssertOneError(json, json: true, kind);
    }

    [Fact]
    public async Task AuditVerify_UnknownRun_FailsAsRunNotFound()
    {
        var runId = "r-" + Guid.NewGuid().ToString("N");

        var text = await RunSpineAsync(["audit", "verify", "--run", runId]);
        var json = await RunSpineAsync(["audit", "verify", "--run", runId, "--json"]);

        Assert.Equal(1, text.Exit);
        AssertOneError(text, json: false, "run_not_found");
        Assert.Equal(1, json.Exit);
        AssertOneError(json, json: true, "run_not_found");
    }

    [Fact]
    public async Task Start_InputFileLargerThanOneArgumentMayBe_StartsTheRunWithAllOfIt()
    {
        // Linux caps one argument at 128 KiB (MAX_ARG_STRLEN), below the 1 MiB payload ceiling.
        var padding = new string('x', 200 * 1024);
        var file = Path.Combine(Path.GetTempPath(), $"spine-input-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(file, JsonSerializer.Serialize(new { steps = 1, stepMilliseconds = 0, padding }));
        try
        {
            var (exit, output) = await SpineAsync("start", "ledger", "--input-file", file, "--wait", "--json");

            Assert.Equal(0, exit);
            var runId = JsonDocument.Parse(output).RootElement.GetProperty("runId").GetString()!;
            Assert.Contains(padding, (await fixture.Client.GetJournalAsync(runId))[0].PayloadJson, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task StartAndReplay_InputFileDash_ReadStandardInput()
    {
        var padding = new string('y', 200 * 1024);

        var started = await RunSpineAsync(["start", "ledger", "--input-file", "-", "--wait", "--json"],
            stdin: JsonSerializer.Serialize(new { steps = 1, stepMilliseconds = 0, padding }));
        var runId = JsonDocument.Parse(started.Output).RootElement.GetProperty("runId").GetString()!;
        var replayed = await RunSpineAsync(["replay", runId, "--from-step", "1", "--input-file", "-", "--wait", "--json"],
            stdin: """{"steps":2,"stepMilliseconds":0}""");

        Assert.Equal(0, started.Exit);
        Assert.Contains(padding, (await fixture.Client.GetJournalAsync(runId))[0].PayloadJson, StringComparison.Ordinal);
        Assert.Equal(0, replayed.Exit);
        var replay = JsonDocument.Parse(replayed.Output).RootElement;
        Assert.Equal("Completed", replay.GetProperty("status").GetString());
        Assert.Equal(2, JsonDocument.Parse(replay.GetProperty("resultJson").GetString()!).RootElement.GetProperty("steps").GetInt32());
    }

    [Fact]
    public async Task Start_ArgumentStartingWithAt_IsTakenLiterallyNotAsAResponseFile()
    {
        var key = "@" + Guid.NewGuid().ToString("N");

        var (exit, output) = await SpineAsync("start", "ledger", "--input", """{"steps":1,"stepMilliseconds":0}""", "--key", key, "--json");

        Assert.Equal(0, exit);
        Assert.Equal(key, JsonDocument.Parse(output).RootElement.GetProperty("idempotencyKey").GetString());
    }

    [Fact]
    public async Task StartMany_FileWithBadLines_StartsEveryGoodLineAndNamesEachBadOne()
    {
        var (first, second) = (Guid.NewGuid().ToString(), Guid.NewGuid().ToString());
        string[] lines =
        [
            $$"""{"input":{"steps":1,"stepMilliseconds":0},"key":"{{first}}"}""",
            """{"input":{"steps":1""",
            "",
            $$"""{"input":{"steps":2,"stepMilliseconds":0},"key":"{{second}}","account":"cli-many"}""",
            """{"steps":1}""",
            """{"input":{"steps":"many"}}""",
        ];
        var file = Path.Combine(Path.GetTempPath(), $"spine-runs-{Guid.NewGuid():N}.jsonl");
        await File.WriteAllLinesAsync(file, lines);
        try
        {
            var json = await RunSpineAsync(["start-many", "ledger", "--file", file, "--account", "cli-default", "--parallel", "2", "--wait", "--json"]);
            var text = await RunSpineAsync(["start-many", "ledger", "--file", "-", "--account", "cli-default", "--wait"], stdin: string.Join('\n', lines));

            Assert.Equal(1, json.Exit);
            var results = json.Output.Split('\n').Select(l => JsonDocument.Parse(l).RootElement).ToDictionary(r => r.GetProperty("line").GetInt32());
            Assert.Equal(new[] { 1, 2, 4, 5, 6 }, results.Keys.Order());
            Assert.All(new[] { 1, 4 }, n => Assert.Equal("Completed", results[n].GetProperty("run").GetProperty("status").GetString()));
            Assert.Equal("cli-default", results[1].GetProperty("run").GetProperty("accountId").GetString());
            Assert.Equal("cli-many", results[4].GetProperty("run").GetProperty("accountId").GetString());
            Assert.All(new[] { 2, 5, 6 }, n => Assert.Equal("invalid_payload", results[n].GetProperty("error").GetProperty("kind").GetString()));

            // The same file again: keyed lines return the runs already started, and the text form says the same.
            Assert.Equal(1, text.Exit);
            Assert.Contains($"line 1: {results[1].GetProperty("run").GetProperty("runId").GetString()} ", text.Output, StringComparison.Ordinal);
            Assert.Contains($"line 4: {results[4].GetProperty("run").GetProperty("runId").GetString()} ", text.Output, StringComparison.Ordinal);
            Assert.EndsWith("2 of 5 runs completed; failed lines: 2, 5, 6", text.Output, StringComparison.Ordinal);
            Assert.Equal(new[] { "line 2: error (invalid_payload)", "line 5: error (invalid_payload)", "line 6: error (invalid_payload)" },
                text.Error.Split('\n').Select(l => l[..l.IndexOf(':', l.IndexOf(':') + 1)]).Order());
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Help_ConnectionStringFromTheEnvironment_IsNotPrinted()
    {
        var secret = Guid.NewGuid().ToString("N");

        var run = await RunSpineAsync(["status", "--help"], environment: new() { ["SPINE_CONNECTION"] = $"Host=db;Username=app;Password={secret}" });

        Assert.Equal(0, run.Exit);
        Assert.Contains("--connection", run.Output, StringComparison.Ordinal);
        Assert.DoesNotContain(secret, run.Output + run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task APasswordOnTheCommandLine_IsRefusedNamingWhereItGoes_AndTheEnvironmentStillWorks()
    {
        var secret = "pw-" + Guid.NewGuid().ToString("N");
        var onCommandLine = fixture.Postgres.RuntimeConnectionString + $";Password={secret}";

        var refused = await RunSpineAsync(["list"], connection: onCommandLine);
        var fromEnvironment = await RunSpineAsync(["list", "--json"], environment: new() { ["PGPASSWORD"] = secret });

        Assert.Equal(2, refused.Exit);
        AssertOneError(refused, json: false, "configuration");
        Assert.Contains("--connection holds a password", refused.Error, StringComparison.Ordinal);
        Assert.Contains("PGPASSWORD", refused.Error, StringComparison.Ordinal);
        Assert.DoesNotContain(secret, refused.Output + refused.Error, StringComparison.Ordinal);
        Assert.Equal(0, fromEnvironment.Exit);
    }

    /// <summary>Exactly one error, and nothing else: a JSON object on stdout, or one "error (kind): ..." line on stderr.</summary>
    private static void AssertOneError(CliRun run, bool json, string kind)
    {
        if (json)
        {
            var error = JsonDocument.Parse(run.Output).RootElement.GetProperty("error");
            Assert.Equal(kind, error.GetProperty("kind").GetString());
            Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
            Assert.Equal("", run.Error);
        }
        else
        {
            Assert.Equal("", run.Output);
            Assert.StartsWith($"error ({kind}): ", run.Error, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', run.Error);
        }
    }

    private async Task<(int Exit, string Output)> SpineAsync(params string[] args)
    {
        var run = await RunSpineAsync(args);
        Assert.True(run.Error.Length == 0 || run.Exit != 0, run.Error);
        return (run.Exit, run.Output);
    }

    [Fact]
    public async Task StartMany_InATerminalWithResultsRedirected_DrawsProgressOnStandardError()
    {
        var file = Path.Combine(Path.GetTempPath(), $"spine-runs-{Guid.NewGuid():N}.jsonl");
        var results = file + ".out";
        await File.WriteAllLinesAsync(file, Enumerable.Range(0, 3).Select(_ => """{"input":{"steps":1,"stepMilliseconds":0}}"""));
        try
        {
            // script(1) gives the command a terminal, as a person's shell would; its results go to a file.
            var cli = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory.Replace(
                Path.Combine("tests", "Spine.Tests"), Path.Combine("client", "Spine.Cli"), StringComparison.Ordinal), "spine.dll"));
            var command = $"dotnet '{cli}' start-many ledger --file '{file}' --wait --connection '{fixture.Postgres.RuntimeConnectionString}' --cluster '{fixture.Options.ClusterId}' > '{results}'";
            var start = new ProcessStartInfo("script", ["-qec", command, "/dev/null"]) { RedirectStandardOutput = true, RedirectStandardError = true };
            start.Environment["SPINE_SERVICE_ID"] = fixture.Options.ServiceId;
            start.Environment["TERM"] = "xterm-256color";
            using var process = Process.Start(start)!;
            var terminal = process.StandardOutput.ReadToEndAsync();
            _ = process.StandardError.ReadToEndAsync();
            try
            {
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            }
            catch (TimeoutException)
            {
                process.Kill(entireProcessTree: true);
                throw;
            }

            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {await terminal}");
            Assert.Contains("runs: 3 done", await terminal, StringComparison.Ordinal);
            Assert.Contains("100%", await terminal, StringComparison.Ordinal);
            var written = await File.ReadAllLinesAsync(results);
            Assert.Equal(3, written.Count(l => l.StartsWith("line ", StringComparison.Ordinal)));
            Assert.DoesNotContain(written, l => l.Contains("runs:", StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(file);
            File.Delete(results);
        }
    }

    /// <summary>Runs the spine executable against the fixture's cluster unless told otherwise; kills it after 60 s.</summary>
    private async Task<CliRun> RunSpineAsync(string[] args, string? connection = null, string? cluster = null, string? stdin = null,
        Dictionary<string, string>? environment = null)
    {
        var cli = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory.Replace(
            Path.Combine("tests", "Spine.Tests"), Path.Combine("client", "Spine.Cli"), StringComparison.Ordinal), "spine.dll"));
        var start = new ProcessStartInfo("dotnet", [cli, .. args, "--connection", connection ?? fixture.Postgres.RuntimeConnectionString, "--cluster", cluster ?? fixture.Options.ClusterId])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
        };
        start.Environment["SPINE_SERVICE_ID"] = fixture.Options.ServiceId;
        foreach (var (name, value) in environment ?? [])
        {
            start.Environment[name] = value;
        }

        var started = Stopwatch.GetTimestamp();
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
            process.StandardInput.Close();
        }

        try
        {
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"spine {string.Join(' ', args)} did not exit within 60 s");
        }

        return new CliRun(process.ExitCode, (await output).Trim(), (await error).Trim(), Stopwatch.GetElapsedTime(started));
    }

    private sealed record CliRun(int Exit, string Output, string Error, TimeSpan Elapsed);
}
