using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace LoraCraft.Pipelines;

/// <summary>
/// The A1111 "parameters" text stored in PNGs: the prompt, a `Negative prompt:` line, then one
/// line of `Key: value` pairs (values with commas quoted). Other tools (A1111's PNG Info,
/// civitai, ComfyUI importers) read it, and `--from-png` reads it back.
/// </summary>
public sealed record GenerationParameters
{
    public string Prompt { get; init; } = "";
    public string Negative { get; init; } = "";
    /// <summary>Ordered settings as written: Steps, Sampler, Schedule type, CFG scale, Seed, Size, ...</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Settings { get; init; } = [];

    public string? Get(string key) => Settings.FirstOrDefault(kv => kv.Key == key).Value;

    public string Format()
    {
        var sb = new StringBuilder();
        sb.Append(Prompt);
        if (Negative.Length > 0) sb.Append("\nNegative prompt: ").Append(Negative);
        sb.Append('\n');
        sb.Append(string.Join(", ", Settings.Select(kv => $"{kv.Key}: {Quote(kv.Value)}")));
        return sb.ToString();
    }

    /// <summary>A1111 quotes values that contain a comma, colon or quote (JSON string style).</summary>
    static string Quote(string v) =>
        v.IndexOfAny([',', ':', '"', '\n']) < 0 ? v : System.Text.Json.JsonSerializer.Serialize(v);

    // A1111's re_param
    static readonly Regex SettingRx = new(@"\s*(\w[\w \-/]+):\s*(""(?:\\.|[^\\""])+""|[^,]*)(?:,|$)", RegexOptions.CultureInvariant);

    /// <summary>Parses text written by us or by A1111 (its `parse_generation_parameters` rules).</summary>
    public static GenerationParameters Parse(string text)
    {
        var lines = text.Trim().Replace("\r\n", "\n").Split('\n').ToList();
        string last = lines.Count > 0 ? lines[^1] : "";
        var settings = new List<KeyValuePair<string, string>>();
        // the settings line has at least three "Key: value" pairs; otherwise everything is prompt
        if (SettingRx.Matches(last).Count >= 3)
        {
            lines.RemoveAt(lines.Count - 1);
            foreach (Match m in SettingRx.Matches(last))
            {
                string value = m.Groups[2].Value.Trim();
                if (value.Length >= 2 && value[0] == '"' && value[^1] == '"')
                    value = System.Text.Json.JsonSerializer.Deserialize<string>(value) ?? value;
                settings.Add(new(m.Groups[1].Value.Trim(), value));
            }
        }
        var prompt = new StringBuilder();
        var negative = new StringBuilder();
        bool inNegative = false;
        foreach (var line in lines)
        {
            if (line.StartsWith("Negative prompt:", StringComparison.Ordinal))
            {
                inNegative = true;
                negative.Append(line["Negative prompt:".Length..].TrimStart());
                continue;
            }
            var target = inNegative ? negative : prompt;
            if (target.Length > 0) target.Append('\n');
            target.Append(line);
        }
        return new GenerationParameters { Prompt = prompt.ToString(), Negative = negative.ToString(), Settings = settings };
    }

    /// <summary>Describes a generation the way A1111 does (keys in its order).</summary>
    public static GenerationParameters Describe(GenerationRequest r, string modelName, string? modelHash, string version,
                                                IReadOnlyList<KeyValuePair<string, string>>? extra = null)
    {
        var (samplerName, scheduleType) = Sampling.SamplerNames.ToA1111(r.Sampler, r.Scheduler);
        var s = new List<KeyValuePair<string, string>>
        {
            new("Steps", r.Steps.ToString(CultureInfo.InvariantCulture)),
            new("Sampler", samplerName),
            new("Schedule type", scheduleType),
            new("CFG scale", Num(r.Cfg)),
            new("Seed", r.Seed.ToString(CultureInfo.InvariantCulture)),
            new("Size", $"{r.Width}x{r.Height}"),
        };
        if (modelHash is not null) s.Add(new("Model hash", modelHash));
        s.Add(new("Model", modelName));
        if (r.SubseedStrength != 0)
        {
            s.Add(new("Variation seed", r.Subseed.ToString(CultureInfo.InvariantCulture)));
            s.Add(new("Variation seed strength", Num(r.SubseedStrength)));
        }
        if (r.InitImage is not null) s.Add(new("Denoising strength", Num(r.Denoise)));
        if (r.ClipSkip > 1) s.Add(new("Clip skip", r.ClipSkip.ToString(CultureInfo.InvariantCulture)));
        // A1111 writes RNG when it is not its GPU default: NV, or CPU with its own conventions
        if (r.Noise == Sampling.RandomSource.Nv) s.Add(new("RNG", "NV"));
        else if (r.NoiseConvention == Sampling.NoiseConvention.A1111) s.Add(new("RNG", "CPU"));
        if (r.OldScheduling) s.Add(new("Old prompt editing timelines", "True"));
        if (extra is not null) s.AddRange(extra);
        s.Add(new("Version", version));
        return new GenerationParameters { Prompt = r.Prompt, Negative = r.Negative, Settings = s };
    }

    /// <summary>The request these parameters describe, on top of <paramref name="defaults"/>.</summary>
    public GenerationRequest ApplyTo(GenerationRequest defaults)
    {
        var r = defaults with { Prompt = Prompt, Negative = Negative };
        if (Get("Steps") is { } steps) r = r with { Steps = Int("Steps", steps) };
        if (Get("Sampler") is { } sampler)
        {
            var (name, schedule) = Sampling.SamplerNames.FromA1111(sampler, Get("Schedule type"));
            r = r with { Sampler = name, Scheduler = schedule };
        }
        if (Get("CFG scale") is { } cfg) r = r with { Cfg = Double("CFG scale", cfg) };
        if (Get("Seed") is { } seed) r = r with { Seed = ulong.TryParse(seed, CultureInfo.InvariantCulture, out var v) ? v : throw Bad("Seed", seed) };
        if (Get("Size") is { } size)
        {
            var parts = size.Split('x');
            if (parts.Length != 2) throw Bad("Size", size);
            r = r with { Width = Int("Size", parts[0]), Height = Int("Size", parts[1]) };
        }
        if (Get("Denoising strength") is { } d) r = r with { Denoise = Double("Denoising strength", d) };
        r = r with { ClipSkip = Get("Clip skip") is { } cs ? Int("Clip skip", cs) : 1 };
        if (Get("Variation seed strength") is { } vs)
            r = r with
            {
                SubseedStrength = Double("Variation seed strength", vs),
                Subseed = Get("Variation seed") is { } sub ? (ulong.TryParse(sub, CultureInfo.InvariantCulture, out var sv) ? sv : throw Bad("Variation seed", sub)) : 0,
                NoiseConvention = Sampling.NoiseConvention.A1111,
            };
        r = Get("RNG") switch
        {
            "NV" => r with { Noise = Sampling.RandomSource.Nv, NoiseConvention = Sampling.NoiseConvention.A1111 },
            "CPU" => r with { Noise = Sampling.RandomSource.Cpu, NoiseConvention = Sampling.NoiseConvention.A1111 },
            _ => r,
        };
        if (Get("Old prompt editing timelines") is "True") r = r with { OldScheduling = true };
        return r;
    }

    static int Int(string key, string v) => int.TryParse(v, CultureInfo.InvariantCulture, out var i) ? i : throw Bad(key, v);
    static double Double(string key, string v) =>
        double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : throw Bad(key, v);
    static UserErrorException Bad(string key, string v) => new($"PNG parameters: '{key}: {v}' is not understood");

    public static string Num(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
}
