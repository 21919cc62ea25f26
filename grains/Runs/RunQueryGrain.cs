using Orleans.Concurrency;
using Spine.Journal;

namespace Spine.Runs;

/// <summary>Answers run listings from PostgreSQL on whichever silo takes the call.</summary>
[StatelessWorker]
public sealed class RunQueryGrain(JournalStore store) : Grain, IRunQueryGrain
{
    /// <inheritdoc />
    public Task<IReadOnlyList<RunInfo>> ListAsync(RunQuery query) => store.ListAsync(query);
}
