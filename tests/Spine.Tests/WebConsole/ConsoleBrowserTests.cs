using Microsoft.Playwright;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Tests.Admin;
using static Microsoft.Playwright.Assertions;

namespace Spine.Tests.WebConsole;

/// <summary>
/// The web console in headless Chromium (Debian's <c>chromium</c>, driven by Playwright; nothing is downloaded), against
/// a real silo process: a user signs in with a key, finds a run, opens its timeline, approves what it waits for and
/// watches it complete. With <c>SPINE_SCREENSHOTS</c> set to a folder, it saves the pages there (docs/console).
/// </summary>
public sealed class ConsoleBrowserTests(AdminApiFixture fixture) : IClassFixture<AdminApiFixture>
{
    private static readonly string? Screenshots = Environment.GetEnvironmentVariable("SPINE_SCREENSHOTS");

    [Fact]
    public async Task User_SignsInFindsARunApprovesItsStep_AndWatchesItComplete()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(12_500, ApproverRole: "finance"));
        Assert.Equal(RunStatus.AwaitingApproval, (await fixture.Client.WaitForStatusAsync(run.RunId, RunStatus.AwaitingApproval, TimeSpan.FromSeconds(60))).Status);
        await using var browser = await ConsoleBrowser.LaunchAsync();
        var page = await browser.NewPageAsync(fixture.BaseAddress);

        // Signed out, the console sends the user to sign in; a wrong key is refused.
        await page.GotoAsync("/console");
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/console/sign-in"));
        await page.FillAsync("#key", "not-a-configured-key-000000");
        await page.ClickAsync("#sign-in");
        await Expect(page.Locator("#sign-in-failed")).ToBeVisibleAsync();
        await page.FillAsync("#key", AdminApiFixture.ApproverKey);
        await page.ClickAsync("#sign-in");
        await Expect(page.Locator("#signed-in-as")).ToContainTextAsync("ann");

        // Find the run by its workflow type and open its timeline.
        await TypeAsync(page, "#type-filter", "payout");
        await page.ClickAsync("#apply-filters");
        var link = page.Locator($"a.run-link:text-is('{run.RunId}')");
        await Expect(link).ToBeVisibleAsync();
        await SnapAsync(page, "runs");
        await link.ClickAsync();
        await Expect(page.Locator("#run-status")).ToHaveTextAsync("AwaitingApproval");
        await SnapAsync(page, "timeline-waiting");

        // Approve it from the inbox, with a comment.
        await page.GotoAsync("/console/approvals");
        await Expect(page.Locator($"#approval-{run.RunId}")).ToBeVisibleAsync();
        await TypeAsync(page, $"#comment-{run.RunId}", "within the quarter's limit");
        await SnapAsync(page, "approvals");
        await page.ClickAsync($"#approve-{run.RunId}");
        await Expect(page.Locator("#decided")).ToContainTextAsync(run.RunId);

        // The timeline follows the run to its end, and names who approved.
        await page.GotoAsync($"/console/runs/{run.RunId}");
        await Expect(page.Locator("#run-status")).ToHaveTextAsync("Completed", new() { Timeout = 30_000 });
        await Expect(page.Locator("#timeline-grid")).ToContainTextAsync("ann [approver, finance]");
        await SnapAsync(page, "timeline-completed");
        var done = await fixture.Client.GetAsync(run.RunId);
        Assert.Equal(RunStatus.Completed, done.Status);
        var decision = (await fixture.Client.GetJournalAsync(run.RunId)).Single(r => r.Kind == "Approval");
        Assert.Contains("within the quarter's limit", decision.PayloadJson, StringComparison.Ordinal);

        if (Screenshots is not null)
        {
            await page.GotoAsync("/console/reliability");
            await Expect(page.Locator("#slo-chart .main-svg").First).ToBeVisibleAsync();
            await Expect(page.Locator("#cost-chart .main-svg").First).ToBeVisibleAsync();
            await SnapAsync(page, "reliability");
        }
    }

    [Fact]
    public async Task Viewer_SeesTheDeadLetterQueue_ButItsReplayIsRefused()
    {
        var dead = await fixture.Client.StartAsync("chaos", new ChaosInput(Steps: 1, FailureRate: 1.0, RetryDelayMilliseconds: 20, MaxAttempts: 2));
        Assert.Equal(RunStatus.DeadLettered, (await fixture.Client.WaitAsync(dead.RunId, TimeSpan.FromSeconds(60))).Status);
        await using var browser = await ConsoleBrowser.LaunchAsync();
        var page = await browser.NewPageAsync(fixture.BaseAddress);
        await page.GotoAsync("/console/sign-in");
        await page.FillAsync("#key", AdminApiFixture.ViewerKey);
        await page.ClickAsync("#sign-in");
        await Expect(page.Locator("#signed-in-as")).ToContainTextAsync("vera");

        await page.GotoAsync("/console/dlq");
        await Expect(page.Locator($"#replay-{dead.RunId}")).ToBeVisibleAsync();
        await SnapAsync(page, "dlq");
        await page.ClickAsync($"#replay-{dead.RunId}");

        await Expect(page.Locator("#console-error")).ToContainTextAsync("forbidden");
        Assert.Equal(RunStatus.DeadLettered, (await fixture.Client.GetAsync(dead.RunId)).Status);
    }

    /// <summary>Types into a FluentUI text field as a user does: click into it, then keys.</summary>
    private static async Task TypeAsync(IPage page, string field, string text)
    {
        await page.Locator(field).ClickAsync();
        await page.Keyboard.TypeAsync(text);
        await Expect(page.Locator(field)).ToHaveJSPropertyAsync("value", text);
    }

    private static async Task SnapAsync(IPage page, string name)
    {
        if (Screenshots is not null)
        {
            Directory.CreateDirectory(Screenshots);
            await page.ScreenshotAsync(new() { Path = Path.Combine(Screenshots, name + ".png") });
        }
    }
}

/// <summary>Headless Chromium from the machine (<c>SPINE_CHROMIUM</c>, else /usr/bin/chromium), launched by Playwright.</summary>
internal sealed class ConsoleBrowser : IAsyncDisposable
{
    private readonly IPlaywright _playwright;
    private readonly IBrowser _browser;

    private ConsoleBrowser(IPlaywright playwright, IBrowser browser) => (_playwright, _browser) = (playwright, browser);

    public static async Task<ConsoleBrowser> LaunchAsync()
    {
        var executable = Environment.GetEnvironmentVariable("SPINE_CHROMIUM") ?? "/usr/bin/chromium";
        if (!File.Exists(executable))
        {
            throw new InvalidOperationException($"No Chromium at {executable}: install Debian's chromium package (infra/scripts/test.sh does) or set SPINE_CHROMIUM.");
        }

        var playwright = await Playwright.CreateAsync();
        var browser = await playwright.Chromium.LaunchAsync(new()
        {
            ExecutablePath = executable,
            Headless = true,

            // As root Chromium needs --no-sandbox; the rest keep it off the network this machine does not have.
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
        return new ConsoleBrowser(playwright, browser);
    }

    public async Task<IPage> NewPageAsync(Uri baseAddress)
    {
        var context = await _browser.NewContextAsync(new() { BaseURL = baseAddress.ToString(), ViewportSize = new() { Width = 1400, Height = 900 } });
        context.SetDefaultTimeout(20_000);
        return await context.NewPageAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await _browser.DisposeAsync();
        _playwright.Dispose();
    }
}
