using System.Net;
using Microsoft.Extensions.Options;

namespace Spine.Silo.Hosting;

/// <summary>Checks <see cref="SiloSettings"/>: every value out of range is reported at once, each naming its setting.</summary>
internal sealed class SiloSettingsValidator : IValidateOptions<SiloSettings>
{
    public ValidateOptionsResult Validate(string? name, SiloSettings options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = new List<string>();
        if (string.IsNullOrWhiteSpace(options.ClusterId))
        {
            problems.Add("Silo:ClusterId is empty.");
        }

        if (string.IsNullOrWhiteSpace(options.ServiceId))
        {
            problems.Add("Silo:ServiceId is empty.");
        }

        if (!IPAddress.TryParse(options.AdvertisedAddress, out _))
        {
            problems.Add($"Silo:AdvertisedAddress '{options.AdvertisedAddress}' is not an IP address.");
        }

        if (!IPAddress.TryParse(options.HttpAddress, out _))
        {
            problems.Add($"Silo:HttpAddress '{options.HttpAddress}' is not an IP address.");
        }

        foreach (var (setting, port) in new[]
        {
            ("SiloPort", options.SiloPort),
            ("GatewayPort", options.GatewayPort),
            ("DashboardPort", options.DashboardPort),
            ("LocalPostgresPort", options.LocalPostgresPort),
        })
        {
            if (port is < 1 or > IPEndPoint.MaxPort)
            {
                problems.Add($"Silo:{setting} is {port}: it must be a TCP port between 1 and 65535.");
            }
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
