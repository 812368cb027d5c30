using System.Globalization;
using System.Text.RegularExpressions;

namespace LoraCraft.Lora;

/// <summary>
/// A LoRA chosen by name with its strengths: text-encoder and UNet multipliers (their values at
/// step 0 when scheduled), DyLoRA rank cut, and optionally per-step schedules, per-block weights
/// and a step range. This is the library's LoRA selection; the APIs fill the same fields.
/// </summary>
public sealed record LoraTag(string Name, double TextEncoder, double UNet, int? DynRank)
{
    /// <summary>Text-encoder strength over the steps; the text is encoded once, with its value at step 0 (as A1111 does).</summary>
    public StrengthSchedule? TextEncoderSchedule { get; init; }
    /// <summary>UNet strength over the steps (loractl keyframes).</summary>
    public StrengthSchedule? UNetSchedule { get; init; }
    public LoraBlockWeights? Blocks { get; init; }
    /// <summary>The steps the UNet part runs (block-weight extension's start/stop); null: all.</summary>
    public StepRange? Active { get; init; }

    /// <summary>Whether the UNet strength changes between sampling steps.</summary>
    public bool Scheduled => UNetSchedule is { Varies: true } || Active is not null;

    /// <summary>The UNet multiplier at 0-based step <paramref name="step"/> of <paramref name="steps"/>.</summary>
    public double UNetAt(int step, int steps) =>
        Active is { } range && !range.Contains(step, steps) ? 0 : UNetSchedule?.At(step, steps) ?? UNet;
}

/// <summary>
/// A1111's extra-network syntax for LoRA: `&lt;lora:NAME&gt;`, `&lt;lora:NAME:W&gt;` (W for both),
/// `&lt;lora:NAME:TE:UNET&gt;`, a 4th positional or `dyn=` for DyLoRA, and named `te=` / `unet=`.
/// Extensions' syntax on top: sd-webui-loractl keyframes in place of any strength
/// (`&lt;lora:NAME:0@0,1@0.5&gt;`, `unet=0@0,1@1`; `hr`/`hrte`/`hrunet` are accepted and, with no
/// hires pass, unused) and sd-webui-lora-block-weight's `lbw=` (or `w=`, or a preset/vector as the
/// 3rd positional), `lbwe=`, `start=`, `stop=`, `step=A-B`. Tags are removed from the text
/// (nothing else changes, as in A1111); `lyco` is an alias.
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
        // the block-weight extension's positional form: a preset or vector where A1111 has the UNet weight
        string? lbw = named.GetValueOrDefault("lbw") ?? named.GetValueOrDefault("w");
        if (positional.Count > 2 && !IsStrength(positional[2]))
        {
            lbw ??= positional[2];
            positional.RemoveAt(2);
        }
        string where = $"prompt tag {whole}";
        var te = Strength(named.GetValueOrDefault("te") ?? (positional.Count > 1 ? positional[1] : null), where);
        var unet = Strength(named.GetValueOrDefault("unet") ?? (positional.Count > 2 ? positional[2] : null), where) ?? te;
        int? dyn = named.TryGetValue("dyn", out var d) ? (int)Number(d, where) : positional.Count > 3 ? (int)Number(positional[3], where) : null;
        var range = Range(named, where);
        return new LoraTag(positional[0], te?.Initial ?? 1.0, unet?.Initial ?? 1.0, dyn)
        {
            TextEncoderSchedule = te?.Schedule,
            UNetSchedule = unet?.Schedule,
            Blocks = lbw is null && !named.ContainsKey("lbwe") ? null : Blocks(lbw, named.GetValueOrDefault("lbwe"), where),
            Active = range,
        };
    }

    /// <summary>A strength: a number, or a keyframe list and its value at step 0.</summary>
    sealed record StrengthValue(double Initial, StrengthSchedule? Schedule);

    static StrengthValue? Strength(string? text, string where)
    {
        if (text is null) return null;
        if (!StrengthSchedule.Looks(text)) return new StrengthValue(Number(text, where), null);
        var schedule = StrengthSchedule.Parse(text, where);
        return new StrengthValue(schedule.At(0, 2), schedule);
    }

    static bool IsStrength(string text) =>
        StrengthSchedule.Looks(text) || double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    static LoraBlockWeights Blocks(string? lbw, string? lbwe, string where)
    {
        try { return LoraBlockWeights.Parse(lbw, lbwe); }
        catch (UserErrorException e) { throw new UserErrorException($"{where}: {e.Message}"); }
    }

    static StepRange? Range(Dictionary<string, string> named, string where)
    {
        double? Get(string key) => named.TryGetValue(key, out var v) ? Number(v, where) : null;
        double? start = Get("start"), stop = Get("stop");
        if (named.TryGetValue("step", out var step) && step.Split('-') is [var a, var b])
            (start, stop) = (Number(a, where), Number(b, where));
        return start is null && stop is null ? null : new StepRange(start, stop);
    }

    static double Number(string s, string where) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v
            : throw new UserErrorException($"{where}: '{s}' is not a number");

    /// <summary>
    /// ComfyUI LoraLoader form for the command line: `FILE_OR_NAME[:UNET[:TE]]`; TE defaults to
    /// UNET, so `name:0.8:0` is LoraLoaderModelOnly. Either strength may be a keyframe list.
    /// </summary>
    public static LoraTag ParseOption(string value)
    {
        var parts = value.Split(':');
        int numeric = 0;
        for (int i = parts.Length - 1; i >= 1 && numeric < 2; i--)
        {
            if (!IsStrength(parts[i])) break;
            numeric++;
        }
        string name = string.Join(':', parts[..(parts.Length - numeric)]);
        if (name.Length == 0) throw new UserErrorException($"lora '{value}' names no LoRA") { Field = "lora" };
        string where = $"lora '{value}'";
        var unet = numeric >= 1 ? Strength(parts[parts.Length - numeric], where) : null;
        var te = numeric == 2 ? Strength(parts[^1], where) : unet;
        return new LoraTag(name, te?.Initial ?? 1.0, unet?.Initial ?? 1.0, null)
        {
            TextEncoderSchedule = te?.Schedule,
            UNetSchedule = unet?.Schedule,
        };
    }
}
