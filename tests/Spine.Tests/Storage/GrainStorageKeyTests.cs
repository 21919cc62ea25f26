using Spine.Hosting;
using Spine.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Spine.Tests.Storage;

[Alias("spine.tests.IAlphaGrain")]
public interface IAlphaGrain : IGrainWithStringKey
{
    [Alias("Set")]
    Task SetAsync(string value);

    [Alias("Get")]
    Task<string?> GetAsync();
}

[Alias("spine.tests.IBetaGrain")]
public interface IBetaGrain : IAlphaGrain
{
}

[GenerateSerializer, Alias("spine.tests.Box")]
public sealed class Box
{
    [Id(0)] public string? Value { get; set; }
}

public class AlphaGrain([PersistentState("state", SpineSiloBuilderExtensions.StorageName)] IPersistentState<Box> state) : Grain, IAlphaGrain
{
    public async Task SetAsync(string value)
    {
        state.State.Value = value;
        await state.WriteStateAsync();
    }

    public async Task<string?> GetAsync()
    {
        await state.ReadStateAsync();
        return state.State.Value;
    }
}

public sealed class BetaGrain([PersistentState("state", SpineSiloBuilderExtensions.StorageName)] IPersistentState<Box> state) : AlphaGrain(state), IBetaGrain
{
}

/// <summary>The traps of the stock ADO.NET storage key, closed by TypeScopedGrainStorage.</summary>
[Collection(ClusterCollection.Name)]
public sealed class GrainStorageKeyTests(ClusterFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public async Task TwoGrainTypes_SameKeyAndStateName_KeepSeparateRows()
    {
        var key = "7-" + Guid.NewGuid().ToString("N")[..6];
        await fixture.Cluster.Client.GetGrain<IAlphaGrain>(key, grainClassNamePrefix: typeof(AlphaGrain).FullName).SetAsync("alpha");
        await fixture.Cluster.Client.GetGrain<IBetaGrain>(key).SetAsync("beta");

        Assert.Equal("alpha", await fixture.Cluster.Client.GetGrain<IAlphaGrain>(key, grainClassNamePrefix: typeof(AlphaGrain).FullName).GetAsync());
        Assert.Equal("beta", await fixture.Cluster.Client.GetGrain<IBetaGrain>(key).GetAsync());
    }

    [Fact]
    public async Task HexLookingStringKeys_DifferentStrings_KeepSeparateRows()
    {
        var suffix = Random.Shared.Next(0x1000, 0xFFFF).ToString("x4", System.Globalization.CultureInfo.InvariantCulture);
        output.WriteLine($"keys 0{suffix} and {suffix}");
        var a = fixture.Cluster.Client.GetGrain<IBetaGrain>("0" + suffix);
        var b = fixture.Cluster.Client.GetGrain<IBetaGrain>(suffix);

        await a.SetAsync("with leading zero");
        await b.SetAsync("without");

        Assert.Equal("with leading zero", await a.GetAsync());
        Assert.Equal("without", await b.GetAsync());
        Assert.Equal(2L, await fixture.Postgres.ScalarAsync<long>(
            "SELECT count(*) FROM orleansstorage WHERE grainidextensionstring IN (@a, @b)", ("a", "k:0" + suffix), ("b", "k:" + suffix)));
    }
}
