using Spectre.Console;

namespace Spine.Cli;

/// <summary>
/// Progress of a long command, drawn on standard error with Spectre.Console while a person watches: only when standard
/// error is a terminal, the output is not <c>--json</c>, and nothing else is being written to that terminal (a command
/// whose results go to standard output shows it only when they are redirected). Otherwise it draws nothing.
/// </summary>
internal static class CliProgress
{
    private static IAnsiConsole? _terminal;

    private static IAnsiConsole Terminal => _terminal ??= AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(Console.Error),
        Interactive = InteractionSupport.Yes,
    });

    /// <summary>Whether progress is drawn; <paramref name="printsLines"/>: the command writes results to standard output as it goes.</summary>
    public static bool Shown(bool json, bool printsLines) =>
        !json && !Console.IsErrorRedirected && (!printsLines || Console.IsOutputRedirected);

    /// <summary>Runs <paramref name="work"/> under a progress bar of <paramref name="total"/> items (null: not known), which it advances.</summary>
    public static async Task<T> BarAsync<T>(bool shown, string description, int? total, Func<Action<bool>, Task<T>> work)
    {
        if (!shown)
        {
            return await work(_ => { });
        }

        return await Terminal.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask(description, maxValue: total ?? 1);
                task.IsIndeterminate = total is null;
                var (done, failed) = (0, 0);
                var result = await work(ok =>
                {
                    var n = Interlocked.Increment(ref done);
                    var f = ok ? Volatile.Read(ref failed) : Interlocked.Increment(ref failed);
                    task.Description = $"{description}: {n} done{(f > 0 ? $", {f} failed" : "")}";
                    if (total is not null)
                    {
                        task.Increment(1);
                    }
                });
                // The last word, once every worker is done (their updates may land in any order).
                task.Description = $"{description}: {done} done{(failed > 0 ? $", {failed} failed" : "")}";
                task.StopTask();
                return result;
            });
    }

    /// <summary>Writes an error line above the progress display (standard error).</summary>
    public static void Error(string line) => Terminal.MarkupLine("[red]" + Markup.Escape(line) + "[/]");

    /// <summary>Runs <paramref name="work"/> under a spinner saying what it waits for.</summary>
    public static async Task<T> SpinnerAsync<T>(bool shown, string status, Func<Task<T>> work) =>
        shown ? await Terminal.Status().Spinner(Spinner.Known.Dots).StartAsync(status, _ => work()) : await work();
}
