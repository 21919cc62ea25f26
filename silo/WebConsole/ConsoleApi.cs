using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Claims;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Components.Authorization;
using Spine.Alerts;
using Spine.Approvals;
using Spine.Runs;
using Spine.Silo.Admin;
using Spine.Slo;

namespace Spine.Silo.WebConsole;

/// <summary>
/// The console's client of the admin API: every call goes over HTTP to this silo's own <c>/api/v1</c> with the signed-in
/// user's key, so the console can do exactly what that key may, checked where the API checks it.
/// </summary>
internal sealed class ConsoleApi(HttpClient http, AuthenticationStateProvider authentication)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter() } };

    public Task<List<RunInfo>> RunsAsync(RunStatus? status, string? type, string? account) =>
        GetAsync<List<RunInfo>>($"runs?limit=200{Query("status", status?.ToString())}{Query("type", type)}{Query("account", account)}");

    public Task<RunTimelineView> TimelineAsync(string runId) => GetAsync<RunTimelineView>($"runs/{Uri.EscapeDataString(runId)}/timeline");

    public Task<List<PendingApproval>> ApprovalsAsync() => GetAsync<List<PendingApproval>>("approvals");

    public Task<RunInfo> DecideAsync(string runId, bool approve, string? comment) =>
        PostAsync<RunInfo>($"runs/{Uri.EscapeDataString(runId)}/approval/{(approve ? "approve" : "reject")}", new DecisionBody(Comment: comment));

    public Task<List<RunInfo>> DeadLettersAsync() => GetAsync<List<RunInfo>>("dlq");

    public Task<RunInfo> ReplayAsync(string runId) => PostAsync<RunInfo>($"dlq/{Uri.EscapeDataString(runId)}/replay", new ReplayBody());

    public Task<RunInfo> DiscardAsync(string runId, string? reason) => PostAsync<RunInfo>($"dlq/{Uri.EscapeDataString(runId)}/discard", new ReasonBody(reason));

    public Task<RunInfo> CancelAsync(string runId) => PostAsync<RunInfo>($"runs/{Uri.EscapeDataString(runId)}/cancel", new ReasonBody("cancelled from the console"));

    public Task<List<SloReport>> SloAsync() => GetAsync<List<SloReport>>("slo");

    public Task<List<CostBucket>> CostsAsync(int hours) => GetAsync<List<CostBucket>>($"costs?hours={hours}");

    public Task<List<AlertView>> AlertsAsync() => GetAsync<List<AlertView>>("alerts?limit=200");

    private static string Query(string name, string? value) => string.IsNullOrWhiteSpace(value) ? "" : $"&{name}={Uri.EscapeDataString(value)}";

    private Task<T> GetAsync<T>(string path) => SendAsync<T>(HttpMethod.Get, path, null);

    private Task<T> PostAsync<T>(string path, object body) => SendAsync<T>(HttpMethod.Post, path, JsonContent.Create(body, options: Json));

    // Whatever goes wrong on the way (the silo unreachable, a timeout, an answer that is not what was asked for) is a
    // ConsoleApiException, which every page shows: nothing else may end the user's circuit.
    private async Task<T> SendAsync<T>(HttpMethod method, string path, HttpContent? content)
    {
        try
        {
            using var request = await RequestAsync(method, path, content);
            return await ReadAsync<T>(await http.SendAsync(request));
        }
        catch (HttpRequestException e)
        {
            throw new ConsoleApiException(503, "unavailable", $"The admin API did not answer: {e.Message}");
        }
        catch (TaskCanceledException)
        {
            throw new ConsoleApiException(504, "timeout", "The admin API did not answer in time.");
        }
        catch (JsonException e)
        {
            throw new ConsoleApiException(502, "bad_answer", $"The admin API's answer could not be read: {e.Message}");
        }
    }

    private async Task<HttpRequestMessage> RequestAsync(HttpMethod method, string path, HttpContent? content)
    {
        var user = (await authentication.GetAuthenticationStateAsync()).User;
        var key = user.FindFirstValue(ConsoleHosting.KeyClaim) ?? throw new ConsoleApiException(401, "unauthorized", "Signed out: sign in again with your key.");
        var request = new HttpRequestMessage(method, AdminApi.Prefix + "/" + path) { Content = content };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return request;
    }

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response)
    {
        using (response)
        {
            if (response.IsSuccessStatusCode)
            {
                return await response.Content.ReadFromJsonAsync<T>(Json)
                    ?? throw new ConsoleApiException(502, "bad_answer", "The admin API answered with nothing.");
            }

            var kind = "http_" + (int)response.StatusCode;
            var detail = response.ReasonPhrase ?? "";
            var typed = false;
            if (response.Content.Headers.ContentType?.MediaType == "application/problem+json")
            {
                using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                // Spine's own errors are typed (urn:spine:error:<kind>); the framework's refusals are not.
                if (problem.RootElement.TryGetProperty("type", out var type) && type.GetString() is { } t && t.StartsWith("urn:spine:error:", StringComparison.Ordinal))
                {
                    typed = true;
                    kind = t["urn:spine:error:".Length..];
                    detail = problem.RootElement.TryGetProperty("detail", out var d) ? d.GetString() ?? detail : detail;
                }
            }

            if (!typed && response.StatusCode == System.Net.HttpStatusCode.Forbidden)
            {
                (kind, detail) = ("forbidden", "Your key's roles do not allow this.");
            }

            throw new ConsoleApiException((int)response.StatusCode, kind, detail);
        }
    }
}

/// <summary>The admin API refused a console's call: its status, error kind and message.</summary>
public sealed class ConsoleApiException(int status, string kind, string detail) : Exception($"{kind}: {detail}")
{
    public int Status { get; } = status;

    public string Kind { get; } = kind;

    public string Detail { get; } = detail;
}
