using System.Diagnostics;
using System.Text.Json;
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

        var (verifyExit, verify) = await SpineAsync("audit", "verify", runId, "--json");
        Assert.Equal(0, verifyExit);
        Assert.True(JsonDocument.Parse(verify).RootElement.GetProperty("intact").GetBoolean());
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

    private async Task<(int Exit, string Output)> SpineAsync(params string[] args)
    {
        var cli = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory.Replace(
            Path.Combine("tests", "Spine.Tests"), Path.Combine("client", "Spine.Cli"), StringComparison.Ordinal), "spine.dll"));
        var start = new ProcessStartInfo("dotnet", [cli, .. args, "--connection", fixture.Postgres.RuntimeConnectionString, "--cluster", fixture.Options.ClusterId])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["SPINE_SERVICE_ID"] = fixture.Options.ServiceId;
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True((await error).Length == 0 || process.ExitCode != 0, await error);
        return (process.ExitCode, (await output).Trim());
    }
}
