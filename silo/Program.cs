using System.CommandLine;
using Microsoft.Extensions.Options;
using Spine.Silo.Commands;
using Spine.Silo.Hosting;
using Spine.Storage;

// spine-silo [run]        run a silo (the embedded PostgreSQL when Spine:ConnectionString is empty); any further
//                         arguments are host configuration, e.g. --Silo:ClusterId=blue
// spine-silo migrate      apply infra/postgres to --connection (owner role), optionally --runtime-login <role>
//                         and --demo (the demo's tables, for silos with Silo:Demo=true)
// spine-silo demo         the quick-start demo: local PostgreSQL, a silo process, agent runs, a killed silo
const int UsageError = 2;

var run = new Command("run", "Run a silo (the default command). Further arguments are host configuration, e.g. --Silo:ClusterId=blue.")
{
    TreatUnmatchedTokensAsErrors = false,
};
run.SetAction((parse, ct) => RunSiloAsync([.. parse.UnmatchedTokens], ct));

var connection = new Option<string?>("--connection")
{
    Description = "Owner connection string of the database to migrate (default: $SPINE_MIGRATE_CONNECTION).",
};
var runtimeLogin = new Option<string?>("--runtime-login") { Description = "A login role to create (or keep) as a member of spine_runtime." };
var demo = new Option<bool>("--demo") { Description = "Also create the demo's tables, for silos with Silo:Demo=true." };
var migrate = new Command("migrate", "Apply the schema in infra/postgres (idempotent).") { connection, runtimeLogin, demo };
migrate.SetAction(async (parse, ct) =>
{
    var target = parse.GetValue(connection) ?? Environment.GetEnvironmentVariable("SPINE_MIGRATE_CONNECTION");
    if (string.IsNullOrWhiteSpace(target))
    {
        await Console.Error.WriteLineAsync("spine-silo migrate: no connection string: pass --connection \"<owner connection string>\" or set SPINE_MIGRATE_CONNECTION.");
        return UsageError;
    }

    if (parse.GetValue(connection) is { } given && Spine.Client.CommandLineSecrets.PasswordProblem(given, "--connection", "SPINE_MIGRATE_CONNECTION") is { } exposed)
    {
        await Console.Error.WriteLineAsync($"spine-silo migrate: {exposed}.");
        return UsageError;
    }

    var includeDemo = parse.GetValue(demo);
    await SchemaMigrator.ApplyAsync(target, parse.GetValue(runtimeLogin), includeDemo, ct);
    Console.WriteLine($"schema applied: {string.Join(", ", SchemaMigrator.Scripts(includeDemo).Select(s => s.Name))}");
    return 0;
});

var postgresPort = new Option<int>("--postgres-port")
{
    Description = "Loopback port of the embedded PostgreSQL (data in .pgdata/).",
    DefaultValueFactory = _ => DemoCommand.DefaultPostgresPort,
};
var dashboardPort = new Option<int>("--dashboard-port")
{
    Description = "Loopback port of the silo's dashboard.",
    DefaultValueFactory = _ => DemoCommand.DefaultDashboardPort,
};
foreach (var port in new[] { postgresPort, dashboardPort })
{
    port.Validators.Add(result =>
    {
        if (result.GetValueOrDefault<int>() is < 1 or > 65535)
        {
            result.AddError($"{port.Name} must be a TCP port between 1 and 65535.");
        }
    });
}

var demoCommand = new Command("demo", "The quick-start demo: the embedded PostgreSQL, a silo process, agent runs, a killed silo.") { postgresPort, dashboardPort };
demoCommand.SetAction((parse, ct) => DemoCommand.RunAsync(parse.GetValue(postgresPort), parse.GetValue(dashboardPort), ct));

var root = new RootCommand("Spine silo: runs the Spine runtime on Orleans and PostgreSQL.") { run, migrate, demoCommand };

// With no command the silo runs, taking every argument as host configuration: `spine-silo --Silo:ClusterId=blue`.
string[] helpOrVersion = ["-h", "-?", "--help", "/h", "/?", "--version"];
if (args.Length == 0 || (args[0].StartsWith('-') && !helpOrVersion.Contains(args[0])))
{
    args = ["run", .. args];
}

var parsed = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
if (parsed.Errors.Count > 0)
{
    foreach (var error in parsed.Errors)
    {
        await Console.Error.WriteLineAsync($"spine-silo: {error.Message}");
    }

    await Console.Error.WriteLineAsync("Run 'spine-silo --help' for usage.");
    return UsageError;
}

// The host handles SIGTERM and Ctrl+C itself, with a 30 s graceful shutdown; System.CommandLine's own handler
// would end the process after 2 s.
return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });

static async Task<int> RunSiloAsync(string[] configuration, CancellationToken cancellationToken)
{
    try
    {
        var app = await SpineSiloHost.BuildAsync(configuration);
        await app.RunAsync(cancellationToken);
        return 0;
    }
    catch (Exception e) when (ValidationFailures(e) is { Count: > 0 } failures)
    {
        // A setting out of range: say which, without a stack trace, and exit as for bad usage.
        foreach (var failure in failures)
        {
            await Console.Error.WriteLineAsync($"spine-silo: invalid configuration: {failure}");
        }

        return UsageError;
    }
}

// Start-up validation reports one options type as an OptionsValidationException, several as an AggregateException.
static List<string> ValidationFailures(Exception e) => e switch
{
    OptionsValidationException invalid => [.. invalid.Failures],
    AggregateException all when all.InnerExceptions.All(i => i is OptionsValidationException) =>
        [.. all.InnerExceptions.SelectMany(i => ((OptionsValidationException)i).Failures)],
    _ => [],
};
