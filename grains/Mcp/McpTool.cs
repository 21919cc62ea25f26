using System.Text.Json;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using Spine.Errors;
using Spine.Tools;

namespace Spine.Mcp;

/// <summary>
/// One tool of an MCP server at one contract: its name with the server's prefix, a version that stands for the
/// digest of its schemas (a changed schema is a new version), the server's input schema, and its output schema (its
/// structured content's, else <c>{"text": ...}</c>). A call goes to the server over the silo's connection.
/// </summary>
public sealed class McpTool : ITool
{
    private const string TextOutput = """{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}""";
    private readonly McpServerConnection _server;
    private readonly bool _structured;

    internal McpTool(McpServerConnection server, Tool tool, string version)
    {
        _server = server;
        ServerToolName = tool.Name;
        _structured = tool.OutputSchema is { ValueKind: JsonValueKind.Object };
        Definition = Describe(server.Settings, tool, version);
        Digest = ToolCatalog.Digest(Definition);
    }

    /// <inheritdoc />
    public ToolDefinition Definition { get; }

    /// <summary>The tool's name on its server.</summary>
    public string ServerToolName { get; }

    /// <summary>The digest of this contract.</summary>
    public byte[] Digest { get; }

    /// <summary>The definition of <paramref name="tool"/> at <paramref name="version"/> (the digest does not depend on the version).</summary>
    internal static ToolDefinition Describe(McpServerSettings settings, Tool tool, string version) => new()
    {
        Name = settings.Prefix + tool.Name,
        Version = version,
        Description = tool.Description ?? tool.Title ?? tool.Name,
        InputSchema = tool.InputSchema.ValueKind == JsonValueKind.Object ? tool.InputSchema.GetRawText() : """{"type":"object"}""",
        OutputSchema = tool.OutputSchema is { ValueKind: JsonValueKind.Object } output ? output.GetRawText() : TextOutput,
        Effect = settings.Effect,
        Timeout = settings.CallTimeout,
        CostPerCall = settings.CostPerCall,
    };

    /// <summary>Whether the server offers this contract now (as last read); a version it withdrew is not taken by new runs.</summary>
    public bool Offered => _server.Offers(ServerToolName, Digest);

    /// <inheritdoc />
    public async Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var values = arguments.ValueKind == JsonValueKind.Object
            ? arguments.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone(), StringComparer.Ordinal)
            : [];
        McpClient? client = null;
        CallToolResult result;
        try
        {
            client = await _server.ClientAsync(context.CancellationToken);
            if (!Offered)
            {
                // The list may be changing under this call (a new contract is registered before it is the server's): read it once more.
                await _server.ListAsync(context.CancellationToken);
            }

            if (!Offered)
            {
                // The server changed the tool's schema since this run pinned it: calling it under the old contract is not this version.
                throw new UnknownToolException(Definition.Name, Definition.Version);
            }

            result = await client.CallToolAsync(ServerToolName, values, cancellationToken: context.CancellationToken);
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (McpProtocolException e) when (e.ErrorCode != McpErrorCode.InternalError)
        {
            // The server answered, refusing the request (unknown tool, invalid arguments): asking again changes nothing.
            throw new TerminalException($"MCP server '{_server.Settings.Name}' refused the call of '{ServerToolName}': {e.Message}", e);
        }
        catch (Exception e) when (e is not SpineException)
        {
            // The connection failed (the server died, its pipe broke), or the server failed inside: the next attempt
            // tries again, over a new connection when this one is gone.
            if (client is not null && McpServerConnection.Broken(client, e))
            {
                _server.Drop(client);
            }

            throw new TransientException($"MCP server '{_server.Settings.Name}' failed during the call of '{ServerToolName}': {e.Message}", e);
        }

        var text = string.Join("\n", result.Content.OfType<TextContentBlock>().Select(t => t.Text));
        if (result.IsError == true)
        {
            throw new TerminalException($"MCP tool '{Definition.Name}' answered with an error: {text}");
        }

        return _structured && result.StructuredContent is { } structured
            ? JsonSerializer.SerializeToElement(structured)
            : JsonSerializer.SerializeToElement(new { text });
    }
}
