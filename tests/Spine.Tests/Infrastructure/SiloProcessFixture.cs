using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Spine.Client;
using Spine.Local.Silos;

namespace Spine.Tests.Infrastructure;

/// <summary>
/// A real silo process (the shipped host, ADO.NET clustering, reminders and storage on PostgreSQL) and a
/// client that finds it through the membership table, as another .NET service would. Tests kill the
/// process with SIGKILL and start a new one on the same endpoints.
/// </summary>
public sealed class SiloProcessFixture : IAsyncLifetime
{
    private IHost? _clientHost;

    public TestPostgres Postgres { get; private set; } = null!;

    public SiloProcessOptions Options { get; private set; } = null!;

    public SiloProcess Silo { get; private set; } = null!;

    public ISpineClient Client { get; private set; } = null!;

    public string LogFile { get; } = Path.Combine(Path.GetTempPath(), $"spine-silo-{Guid.NewGuid():N}.log");

    public async Task InitializeAsync()
    {
        Postgres = await TestPostgres.GetAsync();
        var cluster = "test-" + Guid.NewGuid().ToString("N")[..12];
        Options = TestProcesses.Silo(Postgres.RuntimeConnectionString, cluster, logFile: LogFile) with
        {
            // A rate limit set the way an operator sets one: configuration through the environment.
            Environment = new Dictionary<string, string>
            {
                [TestSpine.SharedDatabaseVariable] = TestSpine.SharedDatabaseValue,
                ["Spine__RateLimits__Limits__0__Tool"] = "calculator",
                ["Spine__RateLimits__Limits__0__Requests"] = "100",
                ["Spine__RateLimits__Limits__0__Per"] = "00:00:01",
                ["Spine__RateLimits__Limits__0__Burst"] = "10",
            },
        };
        await StartSiloAsync();

        _clientHost = await TestProcesses.StartClientAsync(Postgres.RuntimeConnectionString, cluster);
        Client = _clientHost.Services.GetRequiredService<ISpineClient>();
    }

    /// <summary>SIGKILLs the silo process.</summary>
    public async Task KillSiloAsync()
    {
        await Silo.KillAsync();
        await Silo.DisposeAsync();
    }

    /// <summary>Starts a silo process on the fixture's endpoints and waits until it serves.</summary>
    public async Task StartSiloAsync()
    {
        Silo = SiloProcess.Start(Options);
        try
        {
            await Silo.WaitReadyAsync(TimeSpan.FromSeconds(90));
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"Silo process failed to start; its log:{Environment.NewLine}{Tail()}", e);
        }
    }

    /// <summary>The end of the silo processes' log, for failure messages.</summary>
    public string Tail() => File.Exists(LogFile) ? string.Join(Environment.NewLine, File.ReadLines(LogFile).TakeLast(60)) : "(no log)";

    public async Task DisposeAsync()
    {
        await TestProcesses.StopClientAsync(_clientHost);

        await Silo.StopAsync(TimeSpan.FromSeconds(20));
        await Silo.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class SiloProcessCollection : ICollectionFixture<SiloProcessFixture>
{
    public const string Name = "silo-process";
}
