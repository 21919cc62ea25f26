using Orleans.Storage;

namespace Spine.Storage;

/// <summary>
/// Wraps the ADO.NET grain storage so that every row is keyed by grain type as well as key.
/// The stock provider keys rows by (state name, key) only, so two grain classes with the same key and
/// state name share one row; and it parses string keys that look like hexadecimal as integers, so
/// "020235" and "20235" share one row. This passes "{grainType}/{stateName}" as the state name and
/// prefixes every key with "k:" so it is always stored as the exact string.
/// </summary>
internal sealed class TypeScopedGrainStorage(IGrainStorage inner) : IGrainStorage
{
    /// <inheritdoc />
    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        inner.ReadStateAsync(Scope(grainId, stateName), Rekey(grainId), grainState);

    /// <inheritdoc />
    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        inner.WriteStateAsync(Scope(grainId, stateName), Rekey(grainId), grainState);

    /// <inheritdoc />
    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        inner.ClearStateAsync(Scope(grainId, stateName), Rekey(grainId), grainState);

    private static string Scope(GrainId grainId, string stateName) => $"{grainId.Type}/{stateName}";

    private static GrainId Rekey(GrainId grainId) => GrainId.Create(grainId.Type, "k:" + grainId.Key);
}
