using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spine.Errors;
using Spine.Runs;
using Spine.Silo.Demo;
using Spine.Tests.Infrastructure;
using Spine.Tools;

namespace Spine.Tests.Tools;

/// <summary>Tools that are C# methods: generated schemas, typed arguments, the call's context.</summary>
public sealed class TypedToolTests
{
    [Fact]
    public void TheCalculatorsContract_IsGeneratedFromItsMethod()
    {
        var definition = new CalculatorTool().Definition;

        var input = JsonNode.Parse(definition.InputSchema)!;
        Assert.Equal("string", input["properties"]!["expression"]!["type"]!.GetValue<string>());
        Assert.Equal(1, input["properties"]!["expression"]!["minLength"]!.GetValue<int>());
        Assert.Equal(500, input["properties"]!["expression"]!["maxLength"]!.GetValue<int>());
        Assert.Equal(["expression"], input["required"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.False(input["additionalProperties"]!.GetValue<bool>());
        var output = JsonNode.Parse(definition.OutputSchema)!;
        Assert.Equal("number", output["properties"]!["value"]!["type"]!.GetValue<string>());
        Assert.Equal(["value"], output["required"]!.AsArray().Select(n => n!.GetValue<string>()));
    }

    [Fact]
    public async Task ADelegate_BindsTypedArgumentsAndItsContext_AndItsResultMatchesItsOwnOutputSchema()
    {
        var tool = TypedTool.FromMethod(
            (ToolContext context, [Range(1, 10)] int count, [Description("What to repeat.")] string word, bool shout = false) =>
                new Repeated(context.IdempotencyKey, string.Join(' ', Enumerable.Repeat(shout ? word.ToUpperInvariant() : word, count))),
            new TypedToolOptions { Name = "repeat", Version = "1.0.0", Description = "Repeats a word.", Effect = ToolEffect.ReadOnly });
        var registry = new ToolRegistry([tool]);
        var registered = registry.Resolve("repeat", null);
        var arguments = JsonSerializer.SerializeToElement(new { count = 3, word = "ha" });

        registered.ValidateInput(arguments);
        var output = await tool.InvokeAsync(arguments, new ToolContext("r-1", 4, "r-1/4", CancellationToken.None));

        registered.ValidateOutput(output);
        Assert.Equal("""{"key":"r-1/4","text":"ha ha ha"}""", output.GetRawText());
        Assert.Contains("\"required\":[\"count\",\"word\"]", registered.Definition.InputSchema, StringComparison.Ordinal);
        Assert.DoesNotContain("context", registered.Definition.InputSchema, StringComparison.Ordinal);
        Assert.Throws<SchemaValidationException>(() => registered.ValidateInput(JsonSerializer.SerializeToElement(new { count = 11, word = "ha" })));
        Assert.Throws<SchemaValidationException>(() => registered.ValidateInput(JsonSerializer.SerializeToElement(new { count = 1, word = "ha", extra = 1 })));
    }

    [Fact]
    public async Task ATypedToolsOwnException_ReachesTheCallerAsItIs()
    {
        var tool = TypedTool.FromMethod(Task<Repeated> (string word) => throw new TransientException($"down for {word}"),
            new TypedToolOptions { Name = "failing", Version = "1.0.0", Description = "Fails." });

        var error = await Assert.ThrowsAsync<TransientException>(() => tool.InvokeAsync(JsonSerializer.SerializeToElement(new { word = "now" }), new ToolContext("r-1", 1, "r-1/1", CancellationToken.None)));

        Assert.Equal("down for now", error.Message);
    }

    public sealed record Repeated(string Key, string Text);
}

/// <summary>The typed demo tools on a real silo: arguments checked against the generated schema before the method runs.</summary>
[Collection(ClusterCollection.Name)]
public sealed class TypedToolRunTests(ClusterFixture fixture)
{
    [Theory]
    [InlineData("""{"expression":"(1 + 2) * 4"}""", RunStatus.Completed, """{"value":12}""")]
    [InlineData("""{"expression":""}""", RunStatus.Failed, null)]
    [InlineData("""{"expression":"1","extra":true}""", RunStatus.Failed, null)]
    public async Task TheTypedCalculator_RunsThroughTheContract(string arguments, RunStatus status, string? result)
    {
        var run = await fixture.Client.StartAsync("test.tool", new { tool = "calculator", arguments = JsonDocument.Parse(arguments).RootElement });

        var done = await fixture.Client.WaitAsync(run.RunId, TimeSpan.FromSeconds(30));

        Assert.Equal(status, done.Status);
        if (result is not null)
        {
            Assert.Equal(result, done.ResultJson);
        }
        else
        {
            Assert.Equal("schema_validation", done.Error!.Kind);
        }
    }
}
