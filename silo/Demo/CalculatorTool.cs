using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using Spine.Tools;

namespace Spine.Silo.Demo;

/// <summary>Evaluates arithmetic (+ - * / and parentheses) exactly as written: a read-only tool, typed.</summary>
public sealed class CalculatorTool : TypedTool
{
    /// <inheritdoc />
    protected override TypedToolOptions Contract { get; } = new()
    {
        Name = "calculator",
        Version = "1.0.0",
        Description = "Evaluates an arithmetic expression with + - * / and parentheses, e.g. \"(12.5 + 7) * 3\".",
        Effect = ToolEffect.ReadOnly,
    };

    /// <inheritdoc />
    protected override Delegate Method => Evaluate;

    private static CalculatorResult Evaluate([Description("The expression, e.g. (12.5 + 7) * 3.")][StringLength(500, MinimumLength = 1)] string expression) =>
        new(new Parser(expression).Parse());

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

/// <summary>What <see cref="CalculatorTool"/> answers.</summary>
/// <param name="Value">The expression's value.</param>
public sealed record CalculatorResult(double Value);
