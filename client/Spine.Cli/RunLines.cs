using System.Runtime.CompilerServices;
using System.Text.Json;
using Spine.Errors;
using Spine.Runs;

namespace Spine.Cli;

/// <summary>
/// The <c>start-many</c> file format: JSON lines, one run per line, each an object
/// <c>{"input": {...}, "key": "...", "account": "...", "version": 2}</c> of which only <c>input</c> is required.
/// Blank lines are skipped; line numbers count every line.
/// </summary>
internal static class RunLines
{
    private const string Shape = """a line is {"input": <the workflow input>, "key": "...", "account": "...", "version": n} and only "input" is required""";

    /// <summary>The non-blank lines of <paramref name="reader"/> with their 1-based numbers.</summary>
    public static async IAsyncEnumerable<(int Number, string Text)> ReadAsync(TextReader reader, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var number = 0;
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            number++;
            if (!string.IsNullOrWhiteSpace(line))
            {
                yield return (number, line);
            }
        }
    }

    /// <summary>
    /// The start request one line asks for. A member the format does not know is an error rather than ignored,
    /// so that a bare workflow input on a line is refused instead of started without its fields.
    /// </summary>
    /// <exception cref="InvalidPayloadException">The line is not an object of the format.</exception>
    public static StartRunRequest Parse(string line, string workflowType, string? defaultAccount, int? defaultVersion)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            throw new InvalidPayloadException("run line", $"not JSON ({e.Message}); {Shape}");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidPayloadException("run line", $"a JSON {document.RootElement.ValueKind.ToString().ToLowerInvariant()}, not an object; {Shape}");
            }

            string? input = null, key = null, account = defaultAccount;
            var version = defaultVersion;
            foreach (var member in document.RootElement.EnumerateObject())
            {
                switch (member.Name)
                {
                    case "input":
                        input = member.Value.GetRawText();
                        break;
                    case "key":
                        key = Text(member);
                        break;
                    case "account":
                        account = Text(member) ?? defaultAccount;
                        break;
                    case "version":
                        version = member.Value.ValueKind == JsonValueKind.Null ? defaultVersion
                            : member.Value.TryGetInt32(out var v) ? v
                            : throw new InvalidPayloadException("run line", "\"version\" is not a whole number");
                        break;
                    default:
                        throw new InvalidPayloadException("run line", $"unknown member \"{member.Name}\"; {Shape}");
                }
            }

            return input is null
                ? throw new InvalidPayloadException("run line", $"no \"input\" member; {Shape}")
                : new StartRunRequest(workflowType, input, version, key, account);
        }
    }

    private static string? Text(JsonProperty member) => member.Value.ValueKind switch
    {
        JsonValueKind.String => member.Value.GetString(),
        JsonValueKind.Null => null,
        _ => throw new InvalidPayloadException("run line", $"\"{member.Name}\" is not a string"),
    };
}
