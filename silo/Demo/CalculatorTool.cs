using System.Globalization;
using System.Text.Json;
using Spine.Tools;

namespace Spine.Silo.Demo;

/// <summary>Evaluates arithmetic (+ - * / and parentheses) exactly as written: a read-only tool.</summary>
public sealed class CalculatorTool : ITool
{
    /// <inheritdoc />
    public ToolDefinition Definition { get; } = new()
    {
        Name = "calculator",
        Version = "1.0.0",
        Description = "Evaluates an arithmetic expression with + - * / and parentheses, e.g. \"(12.5 + 7) * 3\".",
        Effect = ToolEffect.ReadOnly,
        InputSchema = """
            {"type":"object","properties":{"expression":{"type":"string","minLength":1,"maxLength":500}},
             "required":["expression"],"additionalProperties":false}
            """,
        OutputSchema = """
            {"type":"object","properties":{"value":{"type":"number"}},"required":["value"]}
            """,
    };

    /// <inheritdoc />
    public Task<JsonElement> InvokeAsync(JsonElement arguments, ToolContext context)
    {
        var expression = arguments.GetProperty("expression").GetString()!;
        var value = new Parser(expression).Parse();
        return Task.FromResult(JsonSerializer.SerializeToElement(new { value }));
    }

    private sealed class Parser(string text)
    {
        private int _at;

        public double Parse()
        {
            var value = Sum();
            Skip();
            if (_at < text.Length)
            {
                throw new FormatException($"Unexpected '{text[_at]}' at position {_at + 1} of \"{text}\".");
            }

            if (double.IsInfinity(value) || double.IsNaN(value))
            {
                throw new ArithmeticException($"\"{text}\" has no finite value (division by zero?).");
            }

            return value;
        }

        private double Sum()
        {
            var value = Product();
            while (true)
            {
                Skip();
                if (Eat('+'))
                {
                    value += Product();
                }
                else if (Eat('-'))
                {
                    value -= Product();
                }
                else
                {
                    return value;
                }
            }
        }

        private double Product()
        {
            var value = Unary();
            while (true)
            {
                Skip();
                if (Eat('*'))
                {
                    value *= Unary();
                }
                else if (Eat('/'))
                {
                    value /= Unary();
                }
                else
                {
                    return value;
                }
            }
        }

        private double Unary()
        {
            Skip();
            if (Eat('-'))
            {
                return -Unary();
            }

            if (Eat('('))
            {
                var inner = Sum();
                Skip();
                if (!Eat(')'))
                {
                    throw new FormatException($"Missing ')' in \"{text}\".");
                }

                return inner;
            }

            var start = _at;
            while (_at < text.Length && (char.IsAsciiDigit(text[_at]) || text[_at] == '.'))
            {
                _at++;
            }

            if (start == _at)
            {
                throw new FormatException($"Expected a number at position {start + 1} of \"{text}\".");
            }

            return double.Parse(text.AsSpan(start, _at - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);
        }

        private void Skip()
        {
            while (_at < text.Length && char.IsWhiteSpace(text[_at]))
            {
                _at++;
            }
        }

        private bool Eat(char c)
        {
            if (_at < text.Length && text[_at] == c)
            {
                _at++;
                return true;
            }

            return false;
        }
    }
}
