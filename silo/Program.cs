using Spine.Silo.Demo;
using Spine.Silo.Hosting;
using Spine.Storage;

// spine-silo [run]        run a silo (the embedded PostgreSQL when Spine:ConnectionString is empty)
// spine-silo migrate      apply infra/postgres to --connection (owner role), optionally --runtime-login <role>
//                         and --demo (the demo's tables, for silos with Silo:Demo=true)
// spine-silo demo         the quick-start demo: local PostgreSQL, a silo process, agent runs, a killed silo
var command = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "run";
var rest = args.Length > 0 && !args[0].StartsWith('-') ? args[1..] : args;
switch (command)
{
    case "run":
        var app = await SpineSiloHost.BuildAsync(rest);
        await app.RunAsync();
        return 0;
    case "migrate":
        var connection = Option(rest, "--connection") ?? Environment.GetEnvironmentVariable("SPINE_MIGRATE_CONNECTION");
        if (string.IsNullOrWhiteSpace(connection))
        {
            await Console.Error.WriteLineAsync("usage: spine-silo migrate --connection \"<owner connection string>\" [--runtime-login <role>] [--demo]");
            return 2;
        }

        var demo = rest.Contains("--demo");
        await SchemaMigrator.ApplyAsync(connection, Option(rest, "--runtime-login"), demo);
        Console.WriteLine($"schema applied: {string.Join(", ", SchemaMigrator.Scripts(demo).Select(s => s.Name))}");
        return 0;
    case "demo":
        return await DemoRunner.RunAsync(rest);
    default:
        await Console.Error.WriteLineAsync($"unknown command '{command}': use run, migrate or demo");
        return 2;
}

static string? Option(string[] args, string name)
{
    var at = Array.IndexOf(args, name);
    return at >= 0 && at + 1 < args.Length ? args[at + 1] : null;
}
