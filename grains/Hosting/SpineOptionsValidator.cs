using Microsoft.Extensions.Options;

namespace Spine.Hosting;

/// <summary>
/// Checks <see cref="SpineOptions"/> when the host starts (<c>ValidateOnStart</c>): every value out of range is
/// reported at once, each with the name of its setting, and the silo does not start.
/// </summary>
internal sealed class SpineOptionsValidator : IValidateOptions<SpineOptions>
{
    public ValidateOptionsResult Validate(string? name, SpineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = new List<string>();
        if (string.IsNullOrWhiteSpace(options.ConnectionString))
        {
            problems.Add("Spine:ConnectionString is empty: set it to a PostgreSQL connection string.");
        }

        if (options.MaxPayloadBytes is < 1024 or > 256 * 1024 * 1024)
        {
            problems.Add($"Spine:MaxPayloadBytes is {options.MaxPayloadBytes}: it must be between 1 KiB and 256 MiB.");
        }

        if (options.GaugePeriod < TimeSpan.FromSeconds(1))
        {
            problems.Add($"Spine:GaugePeriod is {options.GaugePeriod}: it must be at least 1 second.");
        }

        if (options.ResumeReminderPeriod < TimeSpan.FromSeconds(1))
        {
            problems.Add($"Spine:ResumeReminderPeriod is {options.ResumeReminderPeriod}: it must be at least 1 second.");
        }

        if (options.FinishedRunIdleTime < TimeSpan.Zero)
        {
            problems.Add($"Spine:FinishedRunIdleTime is {options.FinishedRunIdleTime}: it must not be negative.");
        }

        if (options.JournalMaxBatch is < 1 or > 10_000)
        {
            problems.Add($"Spine:JournalMaxBatch is {options.JournalMaxBatch}: it must be between 1 and 10000.");
        }

        if (options.JournalWriters is < 1 or > 64)
        {
            problems.Add($"Spine:JournalWriters is {options.JournalWriters}: it must be between 1 and 64.");
        }

        if (options.BreakerReportInterval < TimeSpan.FromMilliseconds(10))
        {
            problems.Add($"Spine:BreakerReportInterval is {options.BreakerReportInterval}: it must be at least 10 ms.");
        }

        problems.AddRange(options.Retry.Step.Problems("Spine:Retry:Step"));
        problems.AddRange(options.Retry.Tool.Problems("Spine:Retry:Tool"));
        problems.AddRange(options.Retry.Model.Problems("Spine:Retry:Model"));
        problems.AddRange(options.Retry.Compensation.Problems("Spine:Retry:Compensation"));
        problems.AddRange(options.Breaker.Problems("Spine:Breaker"));
        problems.AddRange(options.Audit.Problems("Spine:Audit"));
        problems.AddRange(options.Timeouts.Problems("Spine:Timeouts"));
        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
