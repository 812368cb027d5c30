using System.Globalization;
using System.Text.RegularExpressions;

namespace LoraCraft.Lora;

/// <summary>A `&lt;lora:NAME:...&gt;` tag: name, text-encoder and UNet strengths, DyLoRA rank cut.</summary>
public sealed record LoraTag(string Name, double TextEncoder, double UNet, int? DynRank);

/// <summary>
/// A1111's extra-network syntax for LoRA: `&lt;lora:NAME&gt;`, `&lt;lora:NAME:W&gt;` (W for both),
/// `&lt;lora:NAME:TE:UNET&gt;`, a 4th positional or `dyn=` for DyLoRA, and named `te=` / `unet=`.
/// Tags are removed from the text (nothing else changes, as in A1111); `lyco` is an alias.
/// </summary>
public static partial class LoraTags
{
    [GeneratedRegex(@"<(lora|lyco):([^>]+)>", RegexOptions.CultureInvariant)]
    private static partial Regex TagRx();

    public static (string Text, IReadOnlyList<LoraTag> Tags) Extract(string prompt)
    {
        var tags = new List<LoraTag>();
        string text = TagRx().Replace(prompt, m =>
        {
            tags.Add(Parse(m.Groups[2].Value, m.Value));
            return "";
        });
        return (text, tags);
    }

    static LoraTag Parse(string body, string whole)
    {
        var positional = new List<string>();
        var named = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var part in body.Split(':'))
        {
            int eq = part.IndexOf('=');
            if (eq > 0) named[part[..eq].Trim()] = part[(eq + 1)..].Trim();
            else positional.Add(part.Trim());
        }
        if (positional.Count == 0 || positional[0].Length == 0) throw new UserErrorException($"prompt tag {whole} names no LoRA");
        double te = named.TryGetValue("te", out var t) ? Number(t, whole) : positional.Count > 1 ? Number(positional[1], whole) : 1.0;
        double unet = named.TryGetValue("unet", out var u) ? Number(u, whole) : positional.Count > 2 ? Number(positional[2], whole) : te;
        int? dyn = named.TryGetValue("dyn", out var d) ? (int)Number(d, whole) : positional.Count > 3 ? (int)Number(positional[3], whole) : null;
        return new LoraTag(positional[0], te, unet, dyn);
    }

    static double Number(string s, string whole) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v
            : throw new UserErrorException($"prompt tag {whole}: '{s}' is not a number");

    /// <summary>
    /// ComfyUI LoraLoader form for the command line: `FILE_OR_NAME[:UNET[:TE]]`; TE defaults to
    /// UNET, so `name:0.8:0` is LoraLoaderModelOnly.
    /// </summary>
    public static LoraTag ParseOption(string value)
    {
        var parts = value.Split(':');
        int numeric = 0;
        for (int i = parts.Length - 1; i >= 1 && numeric < 2; i--)
        {
            if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out _)) break;
            numeric++;
        }
        string name = string.Join(':', parts[..(parts.Length - numeric)]);
        if (name.Length == 0) throw new UserErrorException($"lora '{value}' names no LoRA") { Field = "lora" };
        double unet = numeric >= 1 ? double.Parse(parts[parts.Length - numeric], CultureInfo.InvariantCulture) : 1.0;
        double te = numeric == 2 ? double.Parse(parts[^1], CultureInfo.InvariantCulture) : unet;
        return new LoraTag(name, te, unet, null);
    }
}
