using Spine.Audit;
using Spine.Breakers;
using Spine.Recovery;

namespace Spine.Hosting;

/// <summary>
/// Settings of the Spine runtime on a silo (configuration section <c>Spine</c>), validated when the host
/// starts by <see cref="SpineOptionsValidator"/>.
/// </summary>
public sealed class SpineOptions
{
    /// <summary>The configuration section name.</summary>
    public const string SectionName = "Spine";

    /// <summary>
    /// The PostgreSQL connection string the silo uses at runtime (role with <c>spine_runtime</c> rights).
    /// No default: the silo host starts a local server when it is empty.
    /// </summary>
    public string ConnectionString { get; set; } = "";

    /// <summary>The largest payload (workflow input, step result, tool arguments or output, model response) in UTF-8 bytes. Default 1 MiB.</summary>
    public int MaxPayloadBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// The period of the recovery sweep, which resumes executing runs whose silo died and brings waiting runs
    /// back into memory before their wait is due (two periods ahead). It bounds how long such a run waits before
    /// another silo resumes it.
    /// Default 1 minute; Orleans' minimum reminder period is lowered to match.
    /// </summary>
    public TimeSpan ResumeReminderPeriod { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How long a finished run stays in memory after its last call before it is deactivated (a later call
    /// reads it back from the journal). Default 10 s: a finished run otherwise holds its journal until
    /// Orleans' idle collection (15 minutes), about 9 KB per 10-step run.
    /// </summary>
    public TimeSpan FinishedRunIdleTime { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The most journal appends committed together in one transaction (group commit). Default 256.</summary>
    public int JournalMaxBatch { get; set; } = 256;

    /// <summary>How many group-commit writers run in parallel, each on its own connection. Default 2.</summary>
    public int JournalWriters { get; set; } = 2;

    /// <summary>Default retry policies per step kind (<c>Spine:Retry:Step</c>, <c>:Tool</c>, <c>:Model</c>, <c>:Compensation</c>).</summary>
    public RetryDefaults Retry { get; set; } = new();

    /// <summary>The circuit breaker policy of tools that name none (<c>Spine:Breaker</c>).</summary>
    public BreakerPolicy Breaker { get; set; } = new();

    /// <summary>The key the journal is signed with (<c>Spine:Audit:Key</c> or <c>Spine:Audit:KeyFile</c>); required.</summary>
    public AuditOptions Audit { get; set; } = new();

    /// <summary>How often a silo sends its batched tool outcomes to the breaker grains. Default 200 ms.</summary>
    public TimeSpan BreakerReportInterval { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// How often the run index's gauges (<c>spine.approvals.waiting</c>, <c>spine.approvals.oldest.age</c>,
    /// <c>spine.dlq.size</c>) are read again: one grouped query per period for the cluster. Default 15 s.
    /// </summary>
    public TimeSpan GaugePeriod { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>What the silo does with the tool versions in-flight runs pinned (see <see cref="Tools.ToolCatalogOptions"/>).</summary>
    public Tools.ToolCatalogOptions Tools { get; set; } = new();

    /// <summary>Model calls' attempt timeouts (tools take theirs from their definitions, any call from its <c>StepOptions</c>).</summary>
    public Timeouts.TimeoutDefaults Timeouts { get; set; } = new();
}
