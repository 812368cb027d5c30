using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace LoraCraft.Text;

/// <summary>A run of prompt text and its emphasis multiplier; <see cref="IsBreak"/> marks a `BREAK`.</summary>
public sealed record WeightedText(string Text, double Weight)
{
    /// <summary>A1111's BREAK marker: ("BREAK", -1), which starts a new 75-token chunk.</summary>
    public bool IsBreak => Text == "BREAK" && Weight == -1;
}

/// <summary>
/// A1111's emphasis syntax (`parse_prompt_attention`, "Original" emphasis): `(x)` ×1.1, `[x]` ÷1.1
/// (×(1/1.1)), `(x:1.3)` ×1.3, nesting multiplies, `\(` `\)` `\[` `\]` `\\` are literal characters,
/// a bracket that is never closed applies to the rest of the prompt, a closing bracket with nothing
/// open is text, and `BREAK` as a word becomes a chunk break. Runs of equal weight are merged.
/// Arithmetic in doubles in A1111's order, so equal weights compare equal as they do there.
/// </summary>
public static partial class PromptAttention
{
    public const double RoundMultiplier = 1.1;
    public const double SquareMultiplier = 1 / 1.1;

    [GeneratedRegex(@"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")]
    private static partial Regex TokenRx();

    [GeneratedRegex(@"\s*\bBREAK\b\s*", RegexOptions.Singleline)]
    private static partial Regex BreakRx();

    public static IReadOnlyList<WeightedText> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var res = new List<(string Text, double Weight)>();
        var round = new List<int>();
        var square = new List<int>();

        void MultiplyRange(int start, double multiplier)
        {
            for (int p = start; p < res.Count; p++) res[p] = (res[p].Text, res[p].Weight * multiplier);
        }

        foreach (Match m in TokenRx().Matches(text))
        {
            string token = m.Value;
            var weight = m.Groups[1];
            if (token.StartsWith('\\')) res.Add((token[1..], 1.0));
            else if (token == "(") round.Add(res.Count);
            else if (token == "[") square.Add(res.Count);
            else if (weight.Success && round.Count > 0)
            {
                MultiplyRange(Pop(round), ParseWeight(weight.Value, token));
            }
            else if (token == ")" && round.Count > 0) MultiplyRange(Pop(round), RoundMultiplier);
            else if (token == "]" && square.Count > 0) MultiplyRange(Pop(square), SquareMultiplier);
            else
            {
                var parts = BreakRx().Split(token);
                for (int i = 0; i < parts.Length; i++)
                {
                    if (i > 0) res.Add(("BREAK", -1));
                    res.Add((parts[i], 1.0));
                }
            }
        }
        foreach (int pos in round) MultiplyRange(pos, RoundMultiplier);
        foreach (int pos in square) MultiplyRange(pos, SquareMultiplier);
        if (res.Count == 0) res.Add(("", 1.0));

        // merge runs of identical weights
        var merged = new List<WeightedText>();
        var current = new StringBuilder(res[0].Text);
        double currentWeight = res[0].Weight;
        for (int i = 1; i < res.Count; i++)
        {
            if (res[i].Weight == currentWeight) current.Append(res[i].Text);
            else
            {
                merged.Add(new WeightedText(current.ToString(), currentWeight));
                current.Clear().Append(res[i].Text);
                currentWeight = res[i].Weight;
            }
        }
        merged.Add(new WeightedText(current.ToString(), currentWeight));
        return merged;
    }

    static int Pop(List<int> stack)
    {
        int v = stack[^1];
        stack.RemoveAt(stack.Count - 1);
        return v;
    }

    /// <summary>Python's float() of `[+-]?[.\d]+`; A1111 raises ValueError on "1.2.3" or ".", so this refuses it.</summary>
    static double ParseWeight(string s, string token)
    {
        var ascii = new StringBuilder(s.Length);
        foreach (char c in s) ascii.Append(char.IsDigit(c) ? (char)('0' + (int)char.GetNumericValue(c)) : c);
        return double.TryParse(ascii.ToString(), NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double v)
            ? v
            : throw new PromptSyntaxException($"'{token.Trim()}': '{s}' is not a number");
    }
}
