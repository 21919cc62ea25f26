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
        var other = await fixture.Client.StartAsync("ledger", new LedgerInput(1));
        await fixture.Client.WaitAsync(other.RunId, TimeSpan.FromSeconds(60));
        var run = await StartWaitingAsync();
        var inboxRun = await StartWaitingAsync();
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

        // The sign-in is the console's: the API does not take its cookie.
        Assert.Equal(401, (await page.Context.APIRequest.GetAsync("/api/v1/me")).Status);

        // Find the run by its workflow type (the ledger run drops out of the list) and open its timeline.
        await Expect(RunLink(page, other.RunId)).ToBeVisibleAsync();
        await TypeAsync(page, "#type-filter", "payout");
        await page.ClickAsync("#apply-filters");
        await Expect(RunLink(page, other.RunId)).ToHaveCountAsync(0);
        await Expect(RunLink(page, run)).ToBeVisibleAsync();
        await SnapAsync(page, "runs");
        await RunLink(page, run).ClickAsync();
        await Expect(page.Locator("#run-status")).ToHaveTextAsync("AwaitingApproval");
        await SnapAsync(page, "timeline-waiting");

        // Approve it on its timeline, with a comment, and watch the timeline follow the run to its end.
        await TypeAsync(page, "#timeline-comment", "within the quarter's limit");
        await page.ClickAsync("#timeline-approve");
        await Expect(page.Locator("#run-status")).ToHaveTextAsync("Completed", new() { Timeout = 30_000 });
        await Expect(page.Locator("#timeline-grid")).ToContainTextAsync("ann [approver, finance]");
        await SnapAsync(page, "timeline-completed");
        Assert.Equal(RunStatus.Completed, (await fixture.Client.GetAsync(run)).Status);
        var decision = (await fixture.Client.GetJournalAsync(run)).Single(r => r.Kind == "Approval");
        Assert.Contains("within the quarter's limit", decision.PayloadJson, StringComparison.Ordinal);

        // The inbox decides too.
        await page.GotoAsync("/console/approvals");
        await Expect(page.Locator($"#approval-{inboxRun}")).ToBeVisibleAsync();
        await TypeAsync(page, $"#comment-{inboxRun}", "fine");
        await SnapAsync(page, "approvals");
        await page.ClickAsync($"#approve-{inboxRun}");
        await Expect(page.Locator("#decided")).ToContainTextAsync(inboxRun);
        Assert.Equal(RunStatus.Completed, (await fixture.Client.WaitAsync(inboxRun, TimeSpan.FromSeconds(30))).Status);

        // Reliability and cost: both charts draw.
        await page.GotoAsync("/console/reliability");
        await Expect(page.Locator("#slo-chart .main-svg").First).ToBeVisibleAsync();
        await Expect(page.Locator("#cost-chart .main-svg").First).ToBeVisibleAsync();
        await SnapAsync(page, "reliability");
    }

    [Fact]
    public async Task Timeline_FollowsARunDecidedElsewhere_WithoutAReload()
    {
        var run = await StartWaitingAsync();
        await using var browser = await ConsoleBrowser.LaunchAsync();
        var page = await browser.NewPageAsync(fixture.BaseAddress);
        await SignInAsync(page, AdminApiFixture.ViewerKey);
        await page.GotoAsync($"/console/runs/{run}");
        await Expect(page.Locator("#run-status")).ToHaveTextAsync("AwaitingApproval");

        await fixture.Client.DecideApprovalAsync(run, new Spine.Approvals.ApprovalVerdict(true, "finance", "from a service", Actor: new Spine.Identity.SpineActor("svc:payments", ["finance"])));

        await Expect(page.Locator("#run-status")).ToHaveTextAsync("Completed", new() { Timeout = 30_000 });
        await Expect(page.Locator("#timeline-grid")).ToContainTextAsync("svc:payments");
    }

    [Fact]
    public async Task SignIn_OnOneSilo_HoldsOnAnotherSiloOfTheCluster()
    {
        // Browsers send a host's cookies to all its ports: the second silo must read what the first encrypted.
        var other = await fixture.StartAnotherSiloAsync();
        await using var browser = await ConsoleBrowser.LaunchAsync();
        var page = await browser.NewPageAsync(fixture.BaseAddress);
        await SignInAsync(page, AdminApiFixture.ViewerKey);
        await Expect(page.Locator("#signed-in-as")).ToContainTextAsync("vera");

        await page.GotoAsync(new Uri(other, "/console/alerts").ToString());

        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/console/alerts$"));
        await Expect(page.Locator("#signed-in-as")).ToContainTextAsync("vera");
    }

    private async Task<string> StartWaitingAsync()
    {
        var run = await fixture.Client.StartAsync("payout", new PayoutInput(12_500, ApproverRole: "finance"));
        Assert.Equal(RunStatus.AwaitingApproval, (await fixture.Client.WaitForStatusAsync(run.RunId, RunStatus.AwaitingApproval, TimeSpan.FromSeconds(60))).Status);
        return run.RunId;
    }

    private static ILocator RunLink(IPage page, string runId) => page.Locator($"a.run-link:text-is('{runId}')");

    [Fact]
    public async Task Viewer_SeesTheDeadLetterQueue_ButItsReplayIsRefused()
    {
        var dead = await fixture.Client.StartAsync("chaos", new ChaosInput(Steps: 1, FailureRate: 1.0, RetryDelayMilliseconds: 20, MaxAttempts: 2));
        Assert.Equal(RunStatus.DeadLettered, (await fixture.Client.WaitAsync(dead.RunId, TimeSpan.FromSeconds(60))).Status);
        await using var browser = await ConsoleBrowser.LaunchAsync();
        var page = await browser.NewPageAsync(fixture.BaseAddress);
        await SignInAsync(page, AdminApiFixture.ViewerKey);
        await Expect(page.Locator("#signed-in-as")).ToContainTextAsync("vera");

        await page.GotoAsync("/console/dlq");
        await Expect(page.Locator($"#replay-{dead.RunId}")).ToBeVisibleAsync();
        await SnapAsync(page, "dlq");
        await LiveAsync(page);
        await page.ClickAsync($"#replay-{dead.RunId}");

        await Expect(page.Locator("#console-error")).ToContainTextAsync("forbidden");
        Assert.Equal(RunStatus.DeadLettered, (await fixture.Client.GetAsync(dead.RunId)).Status);
    }

    /// <summary>Signs in on the sign-in page with <paramref name="key"/>.</summary>
    private static async Task SignInAsync(IPage page, string key)
    {
        await page.GotoAsync("/console/sign-in");
        await page.FillAsync("#key", key);
        await page.ClickAsync("#sign-in");
    }

    /// <summary>Types into a FluentUI text field as a user does: click into it, then keys.</summary>
    private static async Task TypeAsync(IPage page, string field, string text)
    {
        await LiveAsync(page);
        await page.Locator(field).ClickAsync();
        await page.Keyboard.TypeAsync(text);
        await Expect(page.Locator(field)).ToHaveJSPropertyAsync("value", text);
    }

    /// <summary>Waits until the page is live: a prerendered page's buttons and fields do nothing before.</summary>
    private static Task LiveAsync(IPage page) => page.Locator(".console-interactive").First.WaitForAsync(new() { State = WaitForSelectorState.Attached });

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
