using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Polly;
using Polly.Retry;

namespace Spine.Alerts;

/// <summary>
/// POSTs an alert as JSON to <see cref="AlertOptions.WebhookUrl"/>, signed: <c>X-Spine-Timestamp</c> (Unix seconds)
/// and <c>X-Spine-Signature: sha256=&lt;hex HMAC-SHA256 of "{timestamp}.{body}" under the secret&gt;</c>, and
/// <c>X-Spine-Alert-Id</c> for a receiver to drop a repeat. Up to 3 tries, with backoff; any 2xx is delivered.
/// </summary>
internal sealed class AlertWebhook : IDisposable
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly HttpClient _http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }) { Timeout = Timeout.InfiniteTimeSpan };
    private readonly IOptions<AlertOptions> _options;
    private readonly TimeProvider _time;
    private readonly ResiliencePipeline<HttpResponseMessage> _pipeline;

    public AlertWebhook(IOptions<AlertOptions> options, TimeProvider time)
    {
        _options = options;
        _time = time;
        _pipeline = new ResiliencePipelineBuilder<HttpResponseMessage> { TimeProvider = time }
            .AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                    .Handle<HttpRequestException>()
                    .Handle<Polly.Timeout.TimeoutRejectedException>()
                    .HandleResult(r => !r.IsSuccessStatusCode),
                MaxRetryAttempts = 2,
                BackoffType = DelayBackoffType.Exponential,
                Delay = TimeSpan.FromMilliseconds(500),
                OnRetry = args =>
                {
                    args.Outcome.Result?.Dispose();
                    return default;
                },
            })
            .AddTimeout(TimeSpan.FromSeconds(10))
            .Build();
    }

    /// <summary>Whether a webhook is configured.</summary>
    public bool Configured => _options.Value.WebhookUrl is not null;

    /// <summary>Delivers <paramref name="alert"/>: how many tries it took, and the last error when none succeeded.</summary>
    public async Task<(int Attempts, string? Error)> DeliverAsync(AlertView alert, CancellationToken cancellationToken)
    {
        var options = _options.Value;
        var body = JsonSerializer.Serialize(alert, Json);
        var attempts = 0;
        try
        {
            using var response = await _pipeline.ExecuteAsync(async ct =>
            {
                attempts++;
                var timestamp = _time.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
                using var request = new HttpRequestMessage(HttpMethod.Post, options.WebhookUrl)
                {
                    Content = new StringContent(body, Encoding.UTF8, new MediaTypeHeaderValue("application/json")),
                };
                request.Headers.Add("X-Spine-Alert-Id", alert.AlertId.ToString(CultureInfo.InvariantCulture));
                request.Headers.Add("X-Spine-Timestamp", timestamp);
                request.Headers.Add("X-Spine-Signature", "sha256=" + Sign(options.WebhookSecret!, timestamp, body));
                return await _http.SendAsync(request, ct);
            }, cancellationToken);
            return response.IsSuccessStatusCode ? (attempts, null) : (attempts, $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
        }
        catch (Exception e) when (e is HttpRequestException or Polly.Timeout.TimeoutRejectedException)
        {
            return (attempts, $"{e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>The signature of a post: hex HMAC-SHA256 of <c>"{timestamp}.{body}"</c> under <paramref name="secret"/>.</summary>
    public static string Sign(string secret, string timestamp, string body) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(timestamp + "." + body)));

    public void Dispose() => _http.Dispose();
}
