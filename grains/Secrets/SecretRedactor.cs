using System.Text.Encodings.Web;
using System.Text.Json;
using Spine.Errors;
using Spine.Recovery;

namespace Spine.Secrets;

/// <summary>
/// Keeps secret values out of what Spine records: every value a tool's secrets resolved to on this silo (rotated
/// ones too) is replaced by <c>[secret name]</c> in tool outputs, model responses and tool exceptions before they
/// are journaled, logged or shown to a model. Values are matched as they are and as JSON writes them.
/// </summary>
public sealed class SecretRedactor
{
    /// <summary>The shortest value Spine accepts as a secret: a shorter one cannot be told from ordinary text.</summary>
    public const int MinimumLength = 8;

    // Bounded: a provider that hands out a fresh value per call (a short-lived token) must not grow this for ever.
    private const int MaxRemembered = 10_000;

    private readonly Dictionary<string, string> _names = new(StringComparer.Ordinal);
    private volatile KeyValuePair<string, string>[] _patterns = [];

    /// <summary>Remembers a value a secret resolved to.</summary>
    public void Remember(string name, string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(value);
        lock (_names)
        {
            if (_names.ContainsKey(value))
            {
                return;
            }

            if (_names.Count >= MaxRemembered)
            {
                _names.Clear();
            }

            _names[value] = name;
            var patterns = new List<KeyValuePair<string, string>>();
            foreach (var (known, owner) in _names)
            {
                // As written, and as JSON writers escape it (the default encoder and the relaxed one).
                patterns.Add(new(known, owner));
                patterns.Add(new(JsonEncodedText.Encode(known).ToString(), owner));
                patterns.Add(new(JsonEncodedText.Encode(known, JavaScriptEncoder.UnsafeRelaxedJsonEscaping).ToString(), owner));
            }

            // Longest first, so a secret that contains another is replaced whole.
            _patterns = [.. patterns.DistinctBy(p => p.Key).OrderByDescending(p => p.Key.Length)];
        }
    }

    /// <summary>The text with every remembered value replaced.</summary>
    public string Redact(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        foreach (var (value, name) in _patterns)
        {
            if (text.Contains(value, StringComparison.Ordinal))
            {
                text = text.Replace(value, $"[secret {name}]", StringComparison.Ordinal);
            }
        }

        return text;
    }

    /// <summary>The JSON value with every remembered value replaced (the same element when none occurs).</summary>
    public JsonElement Redact(JsonElement value)
    {
        if (_patterns.Length == 0 || value.ValueKind == JsonValueKind.Undefined)
        {
            return value;
        }

        var raw = value.GetRawText();
        var redacted = Redact(raw);
        return ReferenceEquals(raw, redacted) || raw == redacted ? value : JsonDocument.Parse(redacted).RootElement.Clone();
    }

    /// <summary>Whether the exception's message, or an inner exception's, quotes a remembered value.</summary>
    public bool Mentions(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (_patterns.Length == 0)
        {
            return false;
        }

        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (Redact(e.Message) != e.Message || (e is AggregateException aggregate && aggregate.InnerExceptions.Any(Mentions)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// An exception to throw instead of one that quotes a secret: its type's name and its redacted message, as a
    /// transient or terminal failure as the original classifies, with no inner exception (which would carry the value
    /// into logs).
    /// </summary>
    public SpineException Scrubbed(Exception exception, Func<Exception, ErrorClass?>? classify)
    {
        ArgumentNullException.ThrowIfNull(exception);
        var messages = new List<string>();
        for (var e = exception; e is not null; e = e.InnerException)
        {
            messages.Add($"{e.GetType().Name}: {Redact(e.Message)}");
        }

        var message = string.Join(" ---> ", messages);
        return ErrorClassifier.Classify(exception, classify) == ErrorClass.Transient
            ? new TransientException(message)
            : new TerminalException(message);
    }
}
