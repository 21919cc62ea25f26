using System.CommandLine;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Spine.Cli;
using Spine.Client;
using Spine.Errors;
using Spine.Runs;

// spine: the operator CLI over ISpineClient. Every command takes --json for scripts.
var json = new Option<bool>("--json") { Description = "Print JSON instead of text.", Recursive = true };
// No DefaultValueFactory here: help prints a default's value, and this one may hold a password.
var connection = new Option<string?>("--connection")
{
    Description = "PostgreSQL connection string of the cluster (default: $SPINE_CONNECTION).",
    Recursive = true,
};
var cluster = new Option<string>("--cluster")
{
    Description = "Orleans cluster id (default: $SPINE_CLUSTER_ID or 'spine').",
    Recursive = true,
    DefaultValueFactory = _ => Environment.GetEnvironmentVariable("SPINE_CLUSTER_ID") ?? "spine",
};
var service = new Option<string>("--service")
{
    Description = "Orleans service id (default: $SPINE_SERVICE_ID or 'spine').",
    Recursive = true,
    DefaultValueFactory = _ => Environment.GetEnvironmentVariable("SPINE_SERVICE_ID") ?? "spine",
};
var connectTimeout = new Option<int?>("--connect-timeout")
{
    Description = "Give up connecting to the cluster after this many seconds (default: $SPINE_CONNECT_TIMEOUT or 10).",
    Recursive = true,
};
var runId = new Argument<string>("run-id") { Description = "The run id." };

var root = new RootCommand("Spine operator CLI: start, inspect and control durable workflow runs.");
root.Options.Add(json);
root.Options.Add(connection);
root.Options.Add(cluster);
root.Options.Add(service);
root.Options.Add(connectTimeout);

var workflowType = new Argument<string>("workflow-type") { Description = "The registered workflow type, e.g. agent." };
var input = new Option<string?>("--input") { Description = "The input as JSON (default: {})." };
var inputFile = new Option<string?>("--input-file") { Description = "Read the input from this file; - reads standard input." };
var key = new Option<string?>("--key") { Description = "Idempotency key: starting the same key twice returns the same run." };
var account = new Option<string?>("--account") { Description = "The account the run belongs to." };
var version = new Option<int?>("--version") { Description = "Workflow version (default: newest)." };
var wait = new Option<bool>("--wait") { Description = "Wait for the run to finish." };
var start = new Command("start", "Start a run.") { workflowType, input, inputFile, key, account, version, wait };
start.SetAction((parse, ct) => RunAsync(parse, async () =>
{
    var inputJson = await ReadInputAsync(parse.GetValue(input), parse.GetValue(inputFile), ct) ?? "{}";
    await using var spine = await ConnectAsync(parse, ct);
    var info = await spine.Client.StartAsync(new StartRunRequest(parse.GetValue(workflowType)!, inputJson, parse.GetValue(version), parse.GetValue(key), parse.GetValue(account)), ct);
    if (parse.GetValue(wait))
    {
        info = await spine.Client.WaitAsync(info.RunId, null, ct);
    }

    return Print(parse, info, RunText(info), info.Status == RunStatus.Failed ? 1 : 0);
}));

var runsFile = new Option<string>("--file")
{
    Description = """JSON lines, one run per line: {"input": {...}, "key": "...", "account": "...", "version": n}, only "input" required; - reads standard input.""",
    Required = true,
};
var parallel = new Option<int>("--parallel") { Description = "Runs started (and, with --wait, awaited) at once, 1 to 256.", DefaultValueFactory = _ => 16 };
var linesAccount = new Option<string?>("--account") { Description = "The account of runs whose line names none." };
var linesVersion = new Option<int?>("--version") { Description = "Workflow version of runs whose line names none (default: newest)." };
var waitEach = new Option<bool>("--wait") { Description = "Wait for each run to finish; a line whose run does not complete counts as failed." };
var startMany = new Command("start-many", "Start one run per line of a JSON-lines file, over one connection.") { workflowType, runsFile, linesAccount, linesVersion, parallel, waitEach };
startMany.SetAction((parse, ct) => RunAsync(parse, async () =>
{
    var degree = parse.GetValue(parallel);
    if (degree is < 1 or > 256)
    {
        throw CliException.InvalidArguments($"--parallel is {degree}: it must be between 1 and 256.");
    }

    var file = parse.GetValue(runsFile)!;
    using var lines = OpenInput(file);
    await using var spine = await ConnectAsync(parse, ct);
    var (type, defaultAccount, defaultVersion, awaitRuns) = (parse.GetValue(workflowType)!, parse.GetValue(linesAccount), parse.GetValue(linesVersion), parse.GetValue(waitEach));
    var (total, failed) = (0, new System.Collections.Concurrent.ConcurrentBag<int>());
    var asJson = parse.GetValue(json);
    var progress = CliProgress.Shown(asJson, printsLines: true);

    // A regular file's lines are counted first for the bar; standard input's, or a pipe's (reading would consume them), are not known ahead.
    int? expected = progress && file != "-" && new FileInfo(file) is { Exists: true, Length: > 0 } regular && (regular.Attributes & FileAttributes.Device) == 0
        ? File.ReadLines(file).Count(l => !string.IsNullOrWhiteSpace(l))
        : null;
    await CliProgress.BarAsync(progress, awaitRuns ? "runs" : "starts", expected, async advance =>
    {
        await Parallel.ForEachAsync(RunLines.ReadAsync(lines, ct), new ParallelOptions { MaxDegreeOfParallelism = degree, CancellationToken = ct }, async (line, token) =>
        {
            Interlocked.Increment(ref total);
            try
            {
                var info = await spine.Client.StartAsync(RunLines.Parse(line.Text, type, defaultAccount, defaultVersion), token);
                if (awaitRuns)
                {
                    info = await spine.Client.WaitAsync(info.RunId, null, token);
                    if (info.Status != RunStatus.Completed)
                    {
                        failed.Add(line.Number);
                    }
                }

                PrintAs(asJson, new { line = line.Number, run = info }, $"line {line.Number}: {RunText(info)}");
                advance(!awaitRuns || info.Status == RunStatus.Completed);
            }
            catch (Exception e) when (Classify(e) is { } error)
            {
                failed.Add(line.Number);
                if (progress)
                {
                    // Through the progress display, which owns the terminal while it draws.
                    CliProgress.Error($"line {line.Number}: error ({error.Kind}): {error.Message}");
                }
                else
                {
                    FailAs(asJson, error.Kind, error.Message, 1, line.Number);
                }

                advance(false);
            }
        });
        return 0;
    });

    var failedLines = failed.Order().ToList();
    if (!parse.GetValue(json))
    {
        Console.WriteLine(failedLines.Count == 0
            ? $"{total} runs {(awaitRuns ? "completed" : "started")}"
            : $"{total - failedLines.Count} of {total} runs {(awaitRuns ? "completed" : "started")}; failed lines: {string.Join(", ", failedLines.Take(20))}{(failedLines.Count > 20 ? ", ..." : "")}");
    }

    return failedLines.Count == 0 ? 0 : 1;
}));

var status = new Command("status", "Show a run.") { runId };
status.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var info = await client.GetAsync(parse.GetValue(runId)!, ct);
    return Print(parse, info, RunText(info));
}, ct));

var timeout = new Option<int?>("--timeout") { Description = "Give up after this many seconds." };
var result = new Command("result", "Wait for a run and print its result.") { runId, timeout };
result.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var seconds = parse.GetValue(timeout);
    var info = await client.WaitAsync(parse.GetValue(runId)!, seconds is null ? null : TimeSpan.FromSeconds(seconds.Value), ct);
    return Print(parse, info, info.Status == RunStatus.Completed ? info.ResultJson ?? "" : RunText(info), info.Status == RunStatus.Completed ? 0 : 1);
}, ct));

var reason = new Option<string?>("--reason") { Description = "Why the run is cancelled." };
var operatorName = new Option<string?>("--as", "--operator") { Description = "Who acts (journaled); default: SpineClient__ActorId." };
var operatorRoles = new Option<string[]>("--role") { Description = "A role of --as (repeat for several)." };
var cancel = new Command("cancel", "Cancel a run at its next step boundary.") { runId, reason, operatorName, operatorRoles };
cancel.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var info = await client.CancelAsync(parse.GetValue(runId)!, parse.GetValue(reason), Actor(parse.GetValue(operatorName), parse.GetValue(operatorRoles)), ct);
    return Print(parse, info, RunText(info));
}, ct));

var signalName = new Argument<string>("name") { Description = "The signal's name (what the workflow waits for)." };
var signalPayload = new Option<string?>("--payload") { Description = "The signal's payload as JSON (default: null)." };
var signalPayloadFile = new Option<string?>("--payload-file") { Description = "Read the payload from this file; - reads standard input." };
var signalId = new Option<string?>("--id") { Description = "A signal id: sending the same id again does not deliver it twice." };
var signal = new Command("signal", "Send a signal to a run (journaled; delivered to its next wait for that name).")
    { runId, signalName, signalPayload, signalPayloadFile, signalId, operatorName, operatorRoles };
signal.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var payload = await ReadInputAsync(parse.GetValue(signalPayload), parse.GetValue(signalPayloadFile), ct) ?? "null";
    var request = new SignalRequest(parse.GetValue(signalName)!, payload, parse.GetValue(signalId), Actor(parse.GetValue(operatorName), parse.GetValue(operatorRoles)));
    var info = await client.SignalAsync(parse.GetValue(runId)!, request, ct);
    return Print(parse, info, RunText(info));
}, ct));

var approvalRole = new Option<string?>("--role") { Description = "Only approvals this role may decide." };
var approvalsList = new Command("list", "List the approvals runs wait for.") { account, approvalRole, new Option<int>("--limit") { Description = "Look at this many waiting runs at most.", DefaultValueFactory = _ => 100 } };
approvalsList.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var pending = await client.ListApprovalsAsync(new Spine.Approvals.ApprovalQuery { AccountId = parse.GetValue(account), Role = parse.GetValue(approvalRole), Limit = parse.GetValue<int>("--limit") }, ct);
    return Print(parse, pending, string.Join(Environment.NewLine, pending.Select(a =>
        $"{a.RunId}  step {a.Step} '{a.Name}'  roles={string.Join(",", a.ApproverRoles)}  deadline={a.Deadline:O}{(a.Escalated ? "  escalated" : "")}  {a.Question}")));
}, ct));
var deciderRole = new Option<string>("--role") { Description = "The approver role you decide as (you must hold it).", Required = true };
var decider = new Option<string?>("--as") { Description = "Who decides (journaled); default: SpineClient__ActorId." };
var comment = new Option<string?>("--comment") { Description = "Why, for the journal." };
var approvalStep = new Option<int?>("--step") { Description = "Which approval, when the run waits for several." };
Command Decide(string name, bool approve)
{
    var command = new Command(name, approve ? "Approve what a run waits for." : "Reject what a run waits for.") { runId, decider, deciderRole, comment, approvalStep };
    command.SetAction((parse, ct) => WithClientAsync(parse, async client =>
    {
        // --as names the actor with the one role it decides as; without it, the client's configured actor decides.
        var role = parse.GetValue(deciderRole)!;
        var actor = Actor(parse.GetValue(decider), [role]);
        var info = await client.DecideApprovalAsync(parse.GetValue(runId)!, new Spine.Approvals.ApprovalVerdict(approve, role, parse.GetValue(comment), parse.GetValue(approvalStep), actor), ct);
        return Print(parse, info, RunText(info));
    }, ct));
    return command;
}

var policiesShow = new Command("show", "Show the run policies the cluster enforces.");
policiesShow.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var set = await client.GetPoliciesAsync(ct);
    var lines = new List<string> { $"deny-by-default={set.DenyByDefault}  max-denials={set.MaxDenials}  rules={set.Rules.Count}" };
    foreach (var rule in set.Rules)
    {
        lines.Add($"{rule.Name}: workflow={rule.Workflow} role={rule.Role ?? "*"} max-tool-calls={rule.MaxToolCalls?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"} chat-clients={(rule.ChatClients is null ? "*" : string.Join(",", rule.ChatClients))}");
        lines.AddRange(rule.Tools.Select(t => $"  {t.Tool}: versions={t.Versions ?? "*"} max-calls={t.MaxCalls?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"}{(t.ArgumentsSchema is null ? "" : " arguments=" + t.ArgumentsSchema)}{(t.ApprovalRoles is null ? "" : " approval-by=" + string.Join(",", t.ApprovalRoles))}{(t.MinConfidence is { } gate ? " min-confidence=" + gate.ToString(System.Globalization.CultureInfo.InvariantCulture) : "")}"));
    }

    return Print(parse, set, string.Join(Environment.NewLine, lines));
}, ct));
var policies = new Command("policies", "Run policies (guardrails).") { policiesShow };

var toolsList = new Command("list", "List the tools: their versions, the newest, and how many in-flight runs pin each.");
toolsList.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var views = await client.GetToolsAsync(null, ct);
    var lines = views.Count == 0
        ? ["no tools"]
        : views.Select(t => $"{t.Name}: newest={t.Newest ?? "-"} versions={string.Join(",", t.Versions.Select(v => v.Version + (v.Registered ? "" : "(not here)") + (v.PinnedBy > 0 ? $"[pinned by {v.PinnedBy}]" : "")))}").ToList();
    return Print(parse, views, string.Join(Environment.NewLine, lines));
}, ct));
var toolArgument = new Argument<string>("tool") { Description = "The tool's name." };
var toolsShow = new Command("show", "Show one tool: each version's contract, where it is registered, and the in-flight runs that pin it.") { toolArgument };
toolsShow.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var view = (await client.GetToolsAsync(parse.GetValue(toolArgument), ct)).Single();
    var lines = new List<string> { $"{view.Name}: newest={view.Newest ?? "-"}" };
    foreach (var v in view.Versions)
    {
        lines.Add($"  {v.Version}: {(v.Registered ? "registered here" : "not registered here")} effect={v.Effect ?? "-"} first-registered={v.FirstRegisteredAt?.ToString("u", System.Globalization.CultureInfo.InvariantCulture) ?? "-"} digest={(v.Digest.Length > 12 ? v.Digest[..12] : v.Digest)}");
        lines.Add($"    pinned by {v.PinnedBy} in-flight run(s){(v.PinningRuns.Count > 0 ? ": " + string.Join(", ", v.PinningRuns) + (v.PinnedBy > v.PinningRuns.Count ? ", ..." : "") : "")}");
        lines.Add($"    description: {v.Description}");
        lines.Add($"    input:  {v.InputSchema}");
        lines.Add($"    output: {v.OutputSchema}");
    }

    return Print(parse, view, string.Join(Environment.NewLine, lines));
}, ct));
var tools = new Command("tools", "Tool contracts: versions, schemas, and the runs that pin them.") { toolsList, toolsShow };

var alertsWorkflow = new Option<string?>("--workflow") { Description = "Only alerts of this workflow type." };
var alertsSince = new Option<DateTimeOffset?>("--since") { Description = "Only alerts raised at or after this time (ISO 8601)." };
var alertsLimit = new Option<int>("--limit") { Description = "At most this many alerts.", DefaultValueFactory = _ => 50 };
var alerts = new Command("alerts", "Anomaly alerts, newest first: failure rate, cost per run, steps per run or a new tool, against each workflow type's baseline.") { alertsWorkflow, alertsSince, alertsLimit };
alerts.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var found = await client.ListAlertsAsync(new Spine.Alerts.AlertQuery { WorkflowType = parse.GetValue(alertsWorkflow), Since = parse.GetValue(alertsSince), Limit = parse.GetValue(alertsLimit) }, ct);
    var text = found.Select(a => $"{a.AlertId,6} {a.RaisedAt:u} {a.WorkflowType} {a.Rule}{(a.Subject is null ? "" : " " + a.Subject)}: {a.Message}"
        + (a.DeliveredAt is null && a.DeliveryAttempts > 0 ? $" [webhook: {a.DeliveryAttempts} tries, {a.LastDeliveryError}]" : ""));
    return Print(parse, found, found.Count == 0 ? "no alerts" : string.Join(Environment.NewLine, text));
}, ct));

var sloWorkflow = new Option<string?>("--workflow") { Description = "Only this workflow type." };
var slo = new Command("slo", "End-to-end success rate per workflow type over rolling windows, against its target: error budget left and burn rate.") { sloWorkflow };
slo.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var reports = await client.GetSloAsync(parse.GetValue(sloWorkflow), ct);
    var inv = System.Globalization.CultureInfo.InvariantCulture;
    string Fraction(double? value) => value is { } v ? v.ToString("0.####", inv) : "-";
    var lines = new List<string>();
    foreach (var report in reports)
    {
        lines.Add($"{report.WorkflowType}: target={Fraction(report.Target)}");
        lines.AddRange(report.Windows.Select(w =>
            $"  {w.Window:g}: succeeded={w.Succeeded} failed={w.Failed} cancelled={w.Cancelled} success-rate={Fraction(w.SuccessRate)} error-budget-left={Fraction(w.ErrorBudgetRemaining)} burn-rate={Fraction(w.BurnRate)}"));
    }

    return Print(parse, reports, lines.Count == 0 ? "no runs ended in the windows, and no targets" : string.Join(Environment.NewLine, lines));
}, ct));

var limitsAccount = new Option<string?>("--account") { Description = "Show the state of this account's per-account limits." };
var limitsShow = new Command("show", "Show the cluster's rate limits: rate, burst, and what each has granted.") { limitsAccount };
limitsShow.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var views = await client.GetRateLimitsAsync(parse.GetValue(limitsAccount), ct);
    var inv = System.Globalization.CultureInfo.InvariantCulture;
    var lines = views.Count == 0
        ? ["no rate limits"]
        : views.Select(v => $"{v.Name}: {v.Target} {v.Subject}{(v.PerAccount ? $" per-account ({v.Account ?? "no account given"})" : "")} {v.PerSecond.ToString("0.###", inv)} {v.Unit}/s burst={v.Capacity.ToString("0.###", inv)} granted={v.Granted} penalties={v.Penalties}{(v.BlockedUntil is { } until ? $" blocked-until={until:O}" : "")}").ToList();
    return Print(parse, views, string.Join(Environment.NewLine, lines));
}, ct));
var limits = new Command("limits", "Cluster-wide rate limits.") { limitsShow };

var budgetAccount = new Argument<string>("account") { Description = "The account." };
var budgetsShow = new Command("show", "Show an account's budget: ceilings, spent, reserved and remaining.") { budgetAccount };
budgetsShow.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var view = await client.GetBudgetAsync(parse.GetValue(budgetAccount)!, ct);
    return Print(parse, view, BudgetText(view));
}, ct));
var dailyTokens = new Option<long?>("--daily-tokens") { Description = "Tokens per UTC day." };
var dailyCost = new Option<decimal?>("--daily-cost") { Description = "Cost per UTC day." };
var totalTokens = new Option<long?>("--total-tokens") { Description = "Tokens in total." };
var totalCost = new Option<decimal?>("--total-cost") { Description = "Cost in total." };
var budgetWindow = new Option<TimeSpan?>("--window") { Description = "The length of the daily window (default a UTC day; a shorter one such as 01:00:00 divides a day evenly)." };
var budgetsSet = new Command("set", "Set an account's ceilings (a ceiling left out is none).") { budgetAccount, dailyTokens, dailyCost, totalTokens, totalCost, budgetWindow, operatorName, operatorRoles };
budgetsSet.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var ceilings = new Spine.Budgets.BudgetCeilings
    {
        DailyTokens = parse.GetValue(dailyTokens), DailyCost = parse.GetValue(dailyCost), TotalTokens = parse.GetValue(totalTokens), TotalCost = parse.GetValue(totalCost),
        Window = parse.GetValue(budgetWindow),
    };
    var view = await client.SetBudgetAsync(parse.GetValue(budgetAccount)!, ceilings, Actor(parse.GetValue(operatorName), parse.GetValue(operatorRoles)), ct);
    return Print(parse, view, BudgetText(view));
}, ct));
var budgets = new Command("budgets", "Account budgets.") { budgetsShow, budgetsSet };

var approvals = new Command("approvals", "Human approvals runs wait for.") { approvalsList, Decide("approve", true), Decide("reject", false) };

var statusFilter = new Option<RunStatus?>("--status") { Description = "Only runs in this status." };
var typeFilter = new Option<string?>("--type") { Description = "Only runs of this workflow type." };
var limit = new Option<int>("--limit") { Description = "At most this many runs.", DefaultValueFactory = _ => 50 };
var list = new Command("list", "List runs, newest first.") { statusFilter, typeFilter, account, limit };
list.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var runs = await client.ListAsync(new RunQuery { Status = parse.GetValue(statusFilter), WorkflowType = parse.GetValue(typeFilter), AccountId = parse.GetValue(account), Limit = parse.GetValue(limit) }, ct);
    return Print(parse, runs, string.Join(Environment.NewLine, runs.Select(RunText)));
}, ct));

var journal = new Command("journal", "Print a run's journal.") { runId };
journal.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var rows = await client.GetJournalAsync(parse.GetValue(runId)!, ct);
    return Print(parse, rows, string.Join(Environment.NewLine, rows.Select(r => $"{r.Seq,4} {r.Kind,-15} {r.Name,-20} {r.Outcome,-5} {r.RecordedAt:O} {r.PayloadJson}")));
}, ct));

var watchTimeout = new Option<int>("--timeout") { Description = "Give up after this many seconds (exit 4).", DefaultValueFactory = _ => 3600 };
var watch = new Command("watch", "Follow a run live: each journal row as it is written, a step's outcome with its latency and what it cost, until the run ends.") { runId, watchTimeout };
watch.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var id = parse.GetValue(runId)!;
    var json = parse.GetValue<bool>("--json");
    var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(watchTimeout), 1, 86_400));
    var lines = new WatchLines();
    var shown = 0;
    while (true)
    {
        var rows = await client.GetJournalAsync(id, ct);
        foreach (var row in rows.Skip(shown))
        {
            Console.WriteLine(json ? JsonSerializer.Serialize(row, CliJson.Options) : lines.Describe(row));
        }

        shown = rows.Count;
        var info = await client.GetAsync(id, ct);
        if (info.Status.IsTerminal() && rows.Count > 0 && WatchLines.Ends(rows[^1]))
        {
            return Print(parse, info, RunText(info));
        }

        if (DateTimeOffset.UtcNow > deadline)
        {
            return Fail(parse, "timeout", $"Run {id} did not end within the timeout; it is {info.Status}.", 4);
        }

        // Back when the run changes status, or after a moment for rows that change nothing else.
        await Task.WhenAny(client.WaitAsync(id, TimeSpan.FromMilliseconds(500), ct), Task.Delay(250, ct));
    }
}, ct));

var auditRun = new Option<string?>("--run") { Description = "Only this run." };
var maxReported = new Option<int>("--max-reported") { Description = "Report at most this many broken runs.", DefaultValueFactory = _ => 100 };
var verify = new Command("verify", "Verify the journal of one run or of every run: keyed hash chain, head anchor and index (tamper check). Exits 3 when anything does not verify.") { auditRun, maxReported };
verify.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    static string Text(JournalVerification check) => check.Intact
        ? $"{check.RunId}: {check.Rows} rows, intact"
        : $"{check.RunId}: BROKEN{(check.FirstBadSeq is { } seq ? $" at row {seq}" : "")}: {check.Problem}";
    if (parse.GetValue(auditRun) is { } one)
    {
        var check = await client.VerifyJournalAsync(one, ct);
        return Print(parse, check, Text(check), check.Intact ? 0 : 3);
    }

    var report = await CliProgress.SpinnerAsync(CliProgress.Shown(parse.GetValue(json), printsLines: false), "verifying every run's journal",
        () => client.VerifyAllJournalsAsync(parse.GetValue(maxReported), ct));
    var summary = report.Intact
        ? $"{report.Runs} runs, {report.Rows} rows, intact"
        : $"{report.Runs} runs, {report.Rows} rows: {report.BrokenRuns} BROKEN" + Environment.NewLine + string.Join(Environment.NewLine, report.Broken.Select(Text));
    return Print(parse, report, summary, report.Intact ? 0 : 3);
}, ct));
var exportRun = new Option<string?>("--run") { Description = "Only this run's rows." };
var exportSince = new Option<DateTimeOffset?>("--since") { Description = "Only rows recorded at or after this time (ISO 8601)." };
var export = new Command("export", "Write journal rows as JSON lines (one row per line, with key id and hashes) for a SIEM. Needs --run or --since.") { exportRun, exportSince };
export.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var run = parse.GetValue(exportRun);
    var since = parse.GetValue(exportSince);
    if (run is null && since is null)
    {
        throw CliException.InvalidArguments("audit export needs --run <run-id> or --since <time>.");
    }

    await foreach (var entry in client.ExportAuditAsync(run, since, ct))
    {
        Console.Out.WriteLine(JsonSerializer.Serialize(entry, CliJson.Options));
    }

    return 0;
}, ct));
var audit = new Command("audit", "Audit commands.") { verify, export };

var limitDlq = new Option<int>("--limit") { Description = "At most this many runs.", DefaultValueFactory = _ => 50 };
var dlqList = new Command("list", "List dead-lettered runs with their failing step and error.") { limitDlq };
dlqList.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var runs = await client.ListDeadLettersAsync(parse.GetValue(limitDlq), ct);
    return Print(parse, runs, string.Join(Environment.NewLine, runs.Select(RunText)));
}, ct));
var dlqShow = new Command("show", "Show a dead-lettered run and its journal.") { runId };
dlqShow.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var info = await client.GetAsync(parse.GetValue(runId)!, ct);
    var rows = await client.GetJournalAsync(info.RunId, ct);
    return Print(parse, new { run = info, journal = rows },
        RunText(info) + Environment.NewLine + string.Join(Environment.NewLine, rows.Select(r => $"{r.Seq,4} {r.Kind,-20} {r.Step,4} {r.Name,-20} {r.Outcome,-5} attempt={r.Attempt} {r.PayloadJson}")));
}, ct));
var discard = new Command("discard", "Remove a run from the dead-letter queue (its journal stays).") { runId, reason, operatorName, operatorRoles };
discard.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var info = await client.DiscardAsync(parse.GetValue(runId)!, parse.GetValue(reason), Actor(parse.GetValue(operatorName), parse.GetValue(operatorRoles)), ct);
    return Print(parse, info, RunText(info));
}, ct));
var fromStep = new Option<int?>("--from-step") { Description = "First step to execute again (default: the failing step)." };
var replayInput = new Option<string?>("--input") { Description = "A changed input as JSON (default: the source's)." };
var replayInputFile = new Option<string?>("--input-file") { Description = "Read the changed input from this file; - reads standard input." };
var parameter = new Option<string[]>("--param") { Description = "A changed step parameter, name=value (repeatable).", AllowMultipleArgumentsPerToken = false };
Command ReplayCommand()
{
    var command = new Command("replay", "Fork a new run from a finished run, reusing its steps before --from-step.") { runId, fromStep, replayInput, replayInputFile, parameter, key, wait, operatorName, operatorRoles };
    command.SetAction((parse, ct) => RunAsync(parse, async () =>
    {
        var parameters = parse.GetValue(parameter) is { Length: > 0 } pairs
            ? pairs.Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "")
            : null;
        var changedInput = await ReadInputAsync(parse.GetValue(replayInput), parse.GetValue(replayInputFile), ct);
        await using var spine = await ConnectAsync(parse, ct);
        var info = await spine.Client.ReplayAsync(new ReplayRequest(parse.GetValue(runId)!, parse.GetValue(fromStep), changedInput, parameters, parse.GetValue(key),
            Actor(parse.GetValue(operatorName), parse.GetValue(operatorRoles))), ct);
        if (parse.GetValue(wait))
        {
            info = await spine.Client.WaitAsync(info.RunId, null, ct);
        }

        return Print(parse, info, RunText(info));
    }));
    return command;
}

var dlq = new Command("dlq", "The dead-letter queue.") { dlqList, dlqShow, discard, ReplayCommand() };

var skipResult = new Option<string>("--result") { Description = "The step's result as JSON.", Required = true };
var retryStep = new Command("retry", "Retry the escalated step with a fresh retry budget.") { runId, reason, operatorName, operatorRoles };
retryStep.SetAction((parse, ct) => DecideAsync(parse, new OperatorDecision(OperatorAction.Retry, null, parse.GetValue(reason), Actor(parse.GetValue(operatorName), parse.GetValue(operatorRoles))), ct));
var skipStep = new Command("skip", "Skip the escalated step, recording --result as its result.") { runId, skipResult, reason, operatorName, operatorRoles };
skipStep.SetAction((parse, ct) => DecideAsync(parse, new OperatorDecision(OperatorAction.Skip, parse.GetValue(skipResult), parse.GetValue(reason), Actor(parse.GetValue(operatorName), parse.GetValue(operatorRoles))), ct));
var failRun = new Command("fail", "Fail the run at the escalated step (compensations run).") { runId, reason, operatorName, operatorRoles };
failRun.SetAction((parse, ct) => DecideAsync(parse, new OperatorDecision(OperatorAction.Fail, null, parse.GetValue(reason), Actor(parse.GetValue(operatorName), parse.GetValue(operatorRoles))), ct));
var operatorCommand = new Command("operator", "Decide on runs awaiting an operator.") { retryStep, skipStep, failRun };

var toolName = new Argument<string>("tool") { Description = "The tool name." };
var breakerShow = new Command("show", "Show a tool's circuit breaker.") { toolName };
breakerShow.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var verdict = await client.GetBreakerAsync(parse.GetValue(toolName)!, ct);
    return Print(parse, verdict, $"{verdict.Tool}: {verdict.State} (failure rate {verdict.FailureRate:P0} over {verdict.Calls} calls{(verdict.OpenUntil is { } until ? $", open until {until:O}" : "")})");
}, ct));
var breakerReset = new Command("reset", "Close a tool's circuit breaker.") { toolName };
breakerReset.SetAction((parse, ct) => WithClientAsync(parse, async client =>
{
    var verdict = await client.ResetBreakerAsync(parse.GetValue(toolName)!, ct);
    return Print(parse, verdict, $"{verdict.Tool}: {verdict.State}");
}, ct));
var breaker = new Command("breaker", "Tool circuit breakers.") { breakerShow, breakerReset };

foreach (var command in new[] { start, startMany, status, watch, result, cancel, signal, approvals, policies, tools, limits, slo, alerts, budgets, list, journal, dlq, ReplayCommand(), operatorCommand, breaker })
{
    root.Subcommands.Add(command);
}

root.Subcommands.Add(audit);

// No response files: with them any argument starting with @ names a file whose words replace it, so
// --reason "@alice asked" fails and --input @run.json is split at its spaces. --input-file reads a file whole.
return await root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null }).InvokeAsync();

Task<int> DecideAsync(ParseResult parse, OperatorDecision decision, CancellationToken ct) => WithClientAsync(parse, async client =>
{
    var info = await client.ResolveEscalationAsync(parse.GetValue(runId)!, decision, ct);
    return Print(parse, info, RunText(info));
}, ct);

Task<int> WithClientAsync(ParseResult parse, Func<ISpineClient, Task<int>> action, CancellationToken ct) => RunAsync(parse, async () =>
{
    await using var spine = await ConnectAsync(parse, ct);
    return await action(spine.Client);
});

// Every command runs inside this: each error becomes one "error (kind): message" line, or one JSON object.
static async Task<int> RunAsync(ParseResult parse, Func<Task<int>> command)
{
    try
    {
        return await command();
    }
    catch (Exception e) when (Classify(e) is { } error)
    {
        return Fail(parse, error.Kind, error.Message, error.ExitCode);
    }
}

// Exit code 2: Spine could not be reached or is misconfigured, and the same command may work later or
// elsewhere. Exit code 1: the cluster answered and refused or failed the request.
static (string Kind, string Message, int ExitCode)? Classify(Exception e) => e switch
{
    CliException cli => (cli.Kind, cli.Message, cli.ExitCode),
    ClusterUnavailableException or StorageUnavailableException => (((SpineException)e).Kind, e.Message, 2),
    SpineException spine => (spine.Kind, spine.Message, 1),

    // A cluster that went away after the client connected.
    OrleansException or TimeoutException or SocketException => ("cluster_unavailable", e.Message, 2),
    _ => null,
};

async Task<CliSession> ConnectAsync(ParseResult parse, CancellationToken ct)
{
    var options = ClientOptions(parse);
    var builder = Host.CreateApplicationBuilder();
    builder.Logging.ClearProviders();
    builder.Services.AddSpineClient(o =>
    {
        o.ConnectionString = options.ConnectionString;
        o.ClusterId = options.ClusterId;
        o.ServiceId = options.ServiceId;
        o.ConnectTimeout = options.ConnectTimeout;
    });
    var host = builder.Build();
    try
    {
        await host.StartAsync(ct);
        return new CliSession(host, host.Services.GetRequiredService<ISpineClient>());
    }
    catch
    {
        await host.StopAsync(CancellationToken.None);
        host.Dispose();
        throw;
    }
}

SpineClientOptions ClientOptions(ParseResult parse)
{
    var connectionString = parse.GetValue(connection) ?? Environment.GetEnvironmentVariable("SPINE_CONNECTION");
    if (string.IsNullOrWhiteSpace(connectionString))
    {
        throw CliException.Configuration("no connection string: pass --connection or set SPINE_CONNECTION");
    }

    if (parse.GetValue(connection) is { } given && CommandLineSecrets.PasswordProblem(given, "--connection", "SPINE_CONNECTION") is { } exposed)
    {
        throw CliException.Configuration(exposed);
    }

    var seconds = parse.GetValue(connectTimeout);
    if (seconds is null && Environment.GetEnvironmentVariable("SPINE_CONNECT_TIMEOUT") is { Length: > 0 } fromEnvironment)
    {
        seconds = int.TryParse(fromEnvironment, out var parsed)
            ? parsed
            : throw CliException.Configuration($"SPINE_CONNECT_TIMEOUT is '{fromEnvironment}': it must be a whole number of seconds");
    }

    var options = new SpineClientOptions
    {
        ConnectionString = connectionString,
        ClusterId = parse.GetValue(cluster)!,
        ServiceId = parse.GetValue(service)!,
        ConnectTimeout = TimeSpan.FromSeconds(seconds ?? 10),
    };
    try
    {
        options.Validate();
    }
    catch (InvalidOperationException e)
    {
        throw CliException.Configuration(e.Message, e);
    }

    return options;
}

// A decision names its actor with --as (and --role); without --as, the client's configured actor decides.
static Spine.Identity.SpineActor? Actor(string? id, string[]? roles) =>
    string.IsNullOrWhiteSpace(id) ? null : new Spine.Identity.SpineActor(id, roles ?? []);

static async Task<string?> ReadInputAsync(string? inline, string? file, CancellationToken ct)
{
    if (file is null)
    {
        return inline;
    }

    if (inline is not null)
    {
        throw CliException.InvalidArguments("pass the input with --input or with --input-file, not both");
    }

    using var reader = OpenInput(file);
    return await reader.ReadToEndAsync(ct);
}

static TextReader OpenInput(string file)
{
    if (file == "-")
    {
        return Console.In;
    }

    try
    {
        return new StreamReader(file);
    }
    catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
    {
        throw CliException.InvalidArguments($"cannot read '{file}': {e.Message}", e);
    }
}

static int Print<T>(ParseResult parse, T value, string text, int exitCode = 0) => PrintAs(parse.GetValue<bool>("--json"), value, text, exitCode);

// Parallel work prints through this one: ParseResult's lookups by name are not safe to make from several threads at once.
static int PrintAs<T>(bool json, T value, string text, int exitCode = 0)
{
    Console.WriteLine(json ? JsonSerializer.Serialize(value, CliJson.Options) : text);
    return exitCode;
}

static int Fail(ParseResult parse, string kind, string message, int exitCode, int? line = null) =>
    FailAs(parse.GetValue<bool>("--json"), kind, message, exitCode, line);

static int FailAs(bool json, string kind, string message, int exitCode, int? line = null)
{
    if (json)
    {
        var error = new { kind, message };
        Console.WriteLine(JsonSerializer.Serialize(line is null ? new { error } : (object)new { line, error }, CliJson.Options));
    }
    else
    {
        Console.Error.WriteLine($"{(line is null ? "" : $"line {line}: ")}error ({kind}): {message}");
    }

    return exitCode;
}

static string BudgetText(Spine.Budgets.BudgetView b)
{
    static string Of<T>(T? value) where T : struct => value?.ToString() ?? "none";
    return $"{b.AccountId}  window={b.WindowStart:O}..{b.WindowEnds:O}" + Environment.NewLine +
        $"  ceilings: daily tokens={Of(b.Ceilings.DailyTokens)} cost={Of(b.Ceilings.DailyCost)}; total tokens={Of(b.Ceilings.TotalTokens)} cost={Of(b.Ceilings.TotalCost)}" + Environment.NewLine +
        $"  spent today: tokens={b.SpentTokensToday} cost={b.SpentCostToday}; in total: tokens={b.SpentTokensTotal} cost={b.SpentCostTotal}" + Environment.NewLine +
        $"  reserved: tokens={b.ReservedTokens} cost={b.ReservedCost} ({b.Reservations} calls); remaining: tokens={Of(b.RemainingTokens)} cost={Of(b.RemainingCost)}";
}

static string RunText(RunInfo r) =>
    $"{r.RunId}  {r.WorkflowType} v{r.WorkflowVersion}  {r.Status}  steps={r.StepsRecorded}  created={r.CreatedAt:O}" +
    (r.Origin is null ? "" : $"  replay-of={r.Origin.SourceRunId}@{r.Origin.FromStep}") +
    (r.Escalation is null ? "" : $"  awaiting-operator: step {r.Escalation.Step} '{r.Escalation.StepName}': {r.Escalation.Error.Message}") +
    string.Concat(r.Approvals.Select(a => $"  awaiting-approval: step {a.Step} '{a.Name}' by {string.Join(" or ", a.ApproverRoles)} until {a.Deadline:O}")) +
    (r.Error is null ? "" : $"  error={r.Error.Kind}{(r.Error.Step is { } step ? $" at step {step} '{r.Error.StepName}'" : "")}: {r.Error.Message}");

internal static class CliJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
    };
}

/// <summary>A started cluster client; disposing it disconnects.</summary>
internal sealed class CliSession(IHost host, ISpineClient client) : IAsyncDisposable
{
    public ISpineClient Client { get; } = client;

    public async ValueTask DisposeAsync()
    {
        await host.StopAsync(CancellationToken.None);
        host.Dispose();
    }
}
