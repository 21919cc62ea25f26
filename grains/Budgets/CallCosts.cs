using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.ML.Tokenizers;
using Spine.Workflows;

namespace Spine.Budgets;

/// <summary>What a call may cost at most, or did cost: tokens (input and output) and money.</summary>
internal readonly record struct Spend(long Tokens, decimal Cost, long InputTokens = 0, long OutputTokens = 0)
{
    public static Spend operator +(Spend a, Spend b) => new(a.Tokens + b.Tokens, a.Cost + b.Cost, a.InputTokens + b.InputTokens, a.OutputTokens + b.OutputTokens);
}

/// <summary>
/// Prices and counts model calls: the worst case before a call (its input counted with the model's tiktoken
/// encoding, plus its maximum output tokens, at the model's price), and what a response used after it (the usage
/// the model reported, else its text counted the same way). Checked at start-up.
/// </summary>
public sealed class CallCosts
{
    /// <summary>The encodings input can be counted with (their data ships with Spine).</summary>
    public static readonly IReadOnlyList<string> Encodings = ["o200k_base", "cl100k_base"];

    // Per message: the role and the separators around it, as the OpenAI chat format counts them; and the reply's priming.
    private const int TokensPerMessage = 4;
    private const int ReplyPriming = 3;

    // What an image or a file is reserved for: about a high-detail image of OpenAI's models.
    private const int AttachmentTokens = 1_105;

    private readonly BudgetOptions _options;
    private readonly IServiceProvider _services;
    // Lazy: building a tokenizer parses its whole vocabulary (about a second of CPU), so the runs that ask for one at
    // once wait for one build instead of each doing it; and the encodings are shared by every model that falls back to them.
    private readonly ConcurrentDictionary<string, Lazy<Tokenizer>> _tokenizers = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Reads and checks the prices and workflow settings of <c>Spine:Budgets</c>.</summary>
    /// <exception cref="InvalidOperationException">A setting is out of range, naming it.</exception>
    public CallCosts(IOptions<BudgetOptions> options, IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _services = services;
        var problems = Problems(_options, key => services.GetKeyedService<IChatClient>(key) is not null).ToList();
        if (problems.Count > 0)
        {
            throw new InvalidOperationException("Spine:Budgets is not valid: " + string.Join(" ", problems));
        }
    }

    /// <summary>The budget settings.</summary>
    internal BudgetOptions Options => _options;

    /// <summary>Every setting of <paramref name="options"/> out of range, each naming its setting.</summary>
    internal static IEnumerable<string> Problems(BudgetOptions options, Func<string, bool> chatClientExists)
    {
        if (options.ReservationTtl <= TimeSpan.Zero)
        {
            yield return $"Spine:Budgets:ReservationTtl is {options.ReservationTtl}: it must be positive.";
        }

        if (options.DefaultMaxOutputTokens < 1)
        {
            yield return $"Spine:Budgets:DefaultMaxOutputTokens is {options.DefaultMaxOutputTokens}: it must be at least 1.";
        }

        foreach (var (model, price) in options.Prices)
        {
            if (price.InputPerMillion < 0 || price.OutputPerMillion < 0)
            {
                yield return $"Spine:Budgets:Prices:{model} has a negative price.";
            }

            if (price.Encoding is { } encoding && !Encodings.Contains(encoding, StringComparer.OrdinalIgnoreCase))
            {
                yield return $"Spine:Budgets:Prices:{model}:Encoding is '{encoding}': use one of {string.Join(", ", Encodings)}.";
            }
        }

        foreach (var (workflow, budget) in options.Workflows)
        {
            var at = $"Spine:Budgets:Workflows:{workflow}";
            if (budget.RunMaxTokens is < 0 || budget.RunMaxCost is < 0)
            {
                yield return $"{at} has a negative run ceiling.";
            }

            if (budget.WarnAt is { } warn && !(warn > 0 && warn <= 1))
            {
                yield return $"{at}:WarnAt is {warn}: it must be above 0 and at most 1.";
            }

            if (budget.DowngradeAt is { } downgrade && !(downgrade > 0 && downgrade <= 1))
            {
                yield return $"{at}:DowngradeAt is {downgrade}: it must be above 0 and at most 1.";
            }

            if (budget.DowngradeAt is not null && budget.DowngradeTo is null)
            {
                yield return $"{at}:DowngradeAt is set without DowngradeTo (the cheaper chat client).";
            }

            if (budget.DowngradeTo is { } client && !chatClientExists(client))
            {
                yield return $"{at}:DowngradeTo names the chat client '{client}', which is not registered (AddKeyedSingleton<IChatClient>(\"{client}\", ...)).";
            }

            if (!Enum.IsDefined(budget.OnExhausted))
            {
                yield return $"{at}:OnExhausted is {budget.OnExhausted}: use Stop or Pause.";
            }
        }
    }

    /// <summary>The model a call to <paramref name="clientKey"/> goes to: the call's model id, else the client's default, else null.</summary>
    internal string? ModelOf(string? clientKey, ChatOptions? options)
    {
        if (options?.ModelId is { } model)
        {
            return model;
        }

        var client = clientKey is null ? _services.GetService<IChatClient>() : _services.GetKeyedService<IChatClient>(clientKey);
        return client?.GetService<ChatClientMetadata>()?.DefaultModelId;
    }

    /// <summary>A downgraded call's options: the call's own, asking for the downgrade's model (null: the cheaper client's default).</summary>
    internal ChatOptions? DowngradedOptions(ChatOptions? options, string workflowType)
    {
        var model = _options.For(workflowType).DowngradeModel;
        if (options is null && model is null)
        {
            return null;
        }

        var downgraded = options?.Clone() ?? new ChatOptions();
        downgraded.ModelId = model;
        return downgraded;
    }

    /// <summary>The price of a model (by id, else by client key, else <c>*</c>); null: free.</summary>
    internal ModelPrice? PriceOf(string? model, string? clientKey) =>
        (model is null ? null : _options.Prices.GetValueOrDefault(model))
        ?? _options.Prices.GetValueOrDefault(clientKey ?? "default")
        ?? _options.Prices.GetValueOrDefault("*");

    /// <summary>The most a model call may spend: its input counted, plus its maximum output, at the model's price.</summary>
    internal Spend WorstCase(IReadOnlyList<ChatMessage> messages, ChatOptions? options, string? clientKey)
    {
        var model = ModelOf(clientKey, options);
        var price = PriceOf(model, clientKey);
        var input = CountInput(messages, options, TokenizerFor(model, price));
        long output = options?.MaxOutputTokens is > 0 and var max ? max : _options.DefaultMaxOutputTokens;
        return new Spend(input + output, Price(price, input, output), input, output);
    }

    /// <summary>
    /// What a model's response used: its reported usage, else its input as counted before the call and its text
    /// counted now, at the price of the model that answered (else the one asked).
    /// </summary>
    internal Spend Used(string responseJson, long countedInput, string? clientKey, ChatOptions? options) =>
        Used(responseJson, () => countedInput, clientKey, options);

    /// <summary>What a model's response used, its input counted from <paramref name="messages"/> only when the response reports none.</summary>
    internal Spend Used(string responseJson, IReadOnlyList<ChatMessage> messages, string? clientKey, ChatOptions? options) =>
        Used(responseJson, () =>
        {
            var model = ModelOf(clientKey, options);
            return CountInput(messages, options, TokenizerFor(model, PriceOf(model, clientKey)));
        }, clientKey, options);

    private Spend Used(string responseJson, Func<long> countedInput, string? clientKey, ChatOptions? options)
    {
        var response = JsonSerializer.Deserialize<ChatResponse>(responseJson, SpineJson.ModelOptions);
        if (response is null)
        {
            return default;
        }

        // The answering model's own price when it has one (a provider may answer with a dated id, such as
        // gpt-4o-2024-08-06, priced under the name asked for), else the asked model's.
        var asked = ModelOf(clientKey, options);
        var answered = response.ModelId ?? asked;
        var price = (response.ModelId is { } id ? _options.Prices.GetValueOrDefault(id) : null) ?? PriceOf(asked, clientKey);
        var input = response.Usage?.InputTokenCount ?? countedInput();
        var output = response.Usage?.OutputTokenCount ?? TokenizerFor(answered, price).CountTokens(response.Text ?? string.Empty);
        return new Spend(input + output, Price(price, input, output), input, output);
    }

    private static decimal Price(ModelPrice? price, long input, long output) =>
        price is null ? 0 : (input * price.InputPerMillion + output * price.OutputPerMillion) / 1_000_000m;

    private Tokenizer TokenizerFor(string? model, ModelPrice? price)
    {
        var key = price?.Encoding ?? model ?? DefaultEncoding;
        if (price?.Encoding is not null || Encodings.Contains(key, StringComparer.OrdinalIgnoreCase))
        {
            return Encoding(key);
        }

        return _tokenizers.GetOrAdd("model:" + key, k => new Lazy<Tokenizer>(() =>
        {
            try
            {
                return TiktokenTokenizer.CreateForModel(k["model:".Length..]);
            }
            catch (Exception e) when (e is NotSupportedException or ArgumentException or InvalidOperationException)
            {
                // A model the tokenizer does not know (a local or a newer one): the newest OpenAI encoding.
                return Encoding(DefaultEncoding);
            }
        })).Value;
    }

    private Tokenizer Encoding(string name) =>
        _tokenizers.GetOrAdd("encoding:" + name.ToLowerInvariant(), k => new Lazy<Tokenizer>(() => TiktokenTokenizer.CreateForEncoding(k["encoding:".Length..]))).Value;

    /// <summary>Builds the default encoding's tokenizer now (the silo starts it in the background), so a run's first model call does not wait for it.</summary>
    internal void Warm() => Encoding(DefaultEncoding);

    private const string DefaultEncoding = "o200k_base";

    private static long CountInput(IReadOnlyList<ChatMessage> messages, ChatOptions? options, Tokenizer tokenizer)
    {
        long count = ReplyPriming;
        var text = new StringBuilder();
        foreach (var message in messages)
        {
            count += TokensPerMessage;
            text.Clear().Append(message.Role.Value).Append('\n');
            if (message.AuthorName is { } author)
            {
                text.Append(author).Append('\n');
            }

            foreach (var content in message.Contents)
            {
                switch (content)
                {
                    case TextContent t:
                        text.Append(t.Text);
                        break;
                    case TextReasoningContent r:
                        text.Append(r.Text);
                        break;
                    case FunctionCallContent call:
                        text.Append(call.Name).Append(JsonSerializer.Serialize(call.Arguments, SpineJson.ModelOptions));
                        break;
                    case FunctionResultContent result:
                        text.Append(JsonSerializer.Serialize(result.Result, SpineJson.ModelOptions));
                        break;
                    case DataContent or UriContent or HostedFileContent:
                        // An image or a file: providers count these by size and detail, not by their bytes as text.
                        count += AttachmentTokens;
                        break;
                    default:
                        // Other contents: their serialized form bounds what they may count.
                        text.Append(JsonSerializer.Serialize(content, SpineJson.ModelOptions));
                        break;
                }

                text.Append('\n');
            }

            count += tokenizer.CountTokens(text.ToString());
        }

        if (options?.Tools is { Count: > 0 } tools)
        {
            foreach (var tool in tools)
            {
                var schema = tool is AIFunctionDeclaration function ? function.JsonSchema.GetRawText() : string.Empty;
                count += TokensPerMessage + tokenizer.CountTokens(tool.Name + "\n" + tool.Description + "\n" + schema);
            }
        }

        return count;
    }
}
