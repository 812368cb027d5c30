using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace LoraCraft.Text;

/// <summary>One `AND` part of a prompt and its weight.</summary>
public sealed record WeightedPrompt(string Text, double Weight);

/// <summary>
/// A1111's composable diffusion syntax (`get_multicond_prompt_list`): the prompt is split at
/// every `AND` standing as a word, and a part ending in `:number` takes that weight (default 1).
/// Part texts keep their leading whitespace; trailing whitespace and the weight are removed.
/// The denoised outputs of the parts are combined by <see cref="Pipelines.Guidance"/>.
/// </summary>
public static partial class PromptAnd
{
    [GeneratedRegex(@"\bAND\b")]
    private static partial Regex AndRx();

    // Python: ^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$
    [GeneratedRegex(@"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")]
    private static partial Regex WeightRx();

    public static IReadOnlyList<WeightedPrompt> Split(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var parts = new List<WeightedPrompt>();
        foreach (var part in AndRx().Split(prompt))
        {
            var m = WeightRx().Match(part);
            if (!m.Success) parts.Add(new WeightedPrompt(part, 1.0));
            else parts.Add(new WeightedPrompt(m.Groups[1].Value, m.Groups[2].Success ? ParseWeight(m.Groups[2].Value) : 1.0));
        }
        return parts;
    }

    /// <summary>The weight as Python's float() reads it (any Unicode decimal digit is a digit).</summary>
    static double ParseWeight(string s)
    {
        var ascii = new StringBuilder(s.Length);
        foreach (char c in s) ascii.Append(char.IsDigit(c) ? (char)('0' + (int)char.GetNumericValue(c)) : c);
        return double.Parse(ascii.ToString(), NumberStyles.Float, CultureInfo.InvariantCulture);
    }
}
