using System.Net.Http.Headers;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Spine.Client;
using Spine.Local.Silos;
using Spine.Tests.Infrastructure;

namespace Spine.Tests.Admin;

/// <summary>
/// A real silo process serving the admin API, with one API key per role under test, and a grain client that
/// starts the runs the API is then asked about.
/// </summary>
public sealed class AdminApiFixture : IAsyncLifetime
{
    public const string ViewerKey = "viewer-key-0000000000000001";
    public const string ApproverKey = "approver-key-00000000000001";
    public const string LegalApproverKey = "approver-key-00000000000002";
    public const string OperatorKey = "operator-key-00000000000001";

    private readonly List<SiloProcess> _more = [];
    private IHost? _clientHost;
    private SiloProcess _silo = null!;
    private SiloProcessOptions _options = null!;

    public ISpineClient Client { get; private set; } = null!;

    public Uri BaseAddress { get; private set; } = null!;

    public string LogFile { get; } = Path.Combine(Path.GetTempPath(), $"spine-admin-{Guid.NewGuid():N}.log");

    public async Task InitializeAsync()
    {
        var postgres = await TestPostgres.GetAsync();
        var cluster = "admin-" + Guid.NewGuid().ToString("N")[..12];
        var options = TestProcesses.Silo(postgres.RuntimeConnectionString, cluster, logFile: LogFile);
        var environment = new Dictionary<string, string>(options.Environment)
        {
            // Keys as an operator configures them: one in plain text (from a secret store), the others by their SHA-256.
            ["Silo__Admin__Keys__0__Id"] = "vera",
            ["Silo__Admin__Keys__0__Roles__0"] = "viewer",
            ["Silo__Admin__Keys__0__Key"] = ViewerKey,
            ["Silo__Admin__Keys__1__Id"] = "ann",
            ["Silo__Admin__Keys__1__Roles__0"] = "approver",
            ["Silo__Admin__Keys__1__Roles__1"] = "finance",
            ["Silo__Admin__Keys__1__Sha256"] = Sha256(ApproverKey),
            ["Silo__Admin__Keys__2__Id"] = "lee",
            ["Silo__Admin__Keys__2__Roles__0"] = "approver",
            ["Silo__Admin__Keys__2__Roles__1"] = "legal",
            ["Silo__Admin__Keys__2__Sha256"] = Sha256(LegalApproverKey).ToUpperInvariant(),
            ["Silo__Admin__Keys__3__Id"] = "otto",
            ["Silo__Admin__Keys__3__Roles__0"] = "operator",
            ["Silo__Admin__Keys__3__Key"] = OperatorKey,

            // A home of its own, so that nothing it keeps there (Data Protection's default key folder) is another silo's.
            ["HOME"] = Directory.CreateTempSubdirectory("spine-silo-home-").FullName,
        };
        _options = options with { Environment = environment };
        _silo = SiloProcess.Start(_options);
        try
        {
            await _silo.WaitReadyAsync(TimeSpan.FromSeconds(90));
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"Silo process failed to start; its log:{Environment.NewLine}{Tail()}", e);
        }

        BaseAddress = new Uri($"http://127.0.0.1:{options.DashboardPort}");
        _clientHost = await TestProcesses.StartClientAsync(postgres.RuntimeConnectionString, cluster);
        Client = _clientHost.Services.GetRequiredService<ISpineClient>();
    }

    /// <summary>Starts another silo of the cluster, configured alike but on ports and a home folder of its own; returns its HTTP address.</summary>
    public async Task<Uri> StartAnotherSiloAsync()
    {
        var fresh = SiloProcessOptions.OnFreePorts(_options.ConnectionString, _options.ClusterId, _options.AuditKey);
        var environment = new Dictionary<string, string>(_options.Environment) { ["HOME"] = Directory.CreateTempSubdirectory("spine-silo-home-").FullName };
        var silo = SiloProcess.Start(_options with { SiloPort = fresh.SiloPort, GatewayPort = fresh.GatewayPort, DashboardPort = fresh.DashboardPort, Environment = environment });
        _more.Add(silo);
        await silo.WaitReadyAsync(TimeSpan.FromSeconds(90));
        return new Uri($"http://127.0.0.1:{fresh.DashboardPort}");
    }

    /// <summary>An HTTP client presenting <paramref name="key"/> (none when null).</summary>
    public HttpClient Http(string? key)
    {
        var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return http;
    }

    /// <summary>The end of the silo's log, for failure messages.</summary>
    public string Tail() => File.Exists(LogFile) ? string.Join(Environment.NewLine, File.ReadLines(LogFile).TakeLast(60)) : "(no log)";

    public async Task DisposeAsync()
    {
        await TestProcesses.StopClientAsync(_clientHost);
        foreach (var silo in _more.Append(_silo))
        {
            await silo.StopAsync(TimeSpan.FromSeconds(20));
            await silo.DisposeAsync();
        }
    }

    private static string Sha256(string key) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)));
}
