using System.Globalization;
using System.Text.RegularExpressions;

namespace LoraCraft.Training;

/// <summary>One line of a kohya sample prompt file.</summary>
public sealed record SamplePrompt
{
    public required string Prompt { get; init; }
    public string Negative { get; init; } = "";
    public int Width { get; init; } = 512;
    public int Height { get; init; } = 512;
    public long? Seed { get; init; }
    public int Steps { get; init; } = 30;
    public double Scale { get; init; } = 7.5;
    public string? Sampler { get; init; }
}

/// <summary>
/// kohya's sample prompt file (`--sample_prompts`, `.txt`): one prompt per line, `#` comments,
/// options after ` --`: n (negative), w, h, d (seed), s (steps, 1..1000), l (CFG scale), ss
/// (sampler). Sizes round down to a multiple of 8 (at least 64), as kohya does.
/// </summary>
public static partial class SamplePrompts
{
    [GeneratedRegex(@"^(?<k>ss|[nwhdsl]) (?<v>.+)$", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex OptionRx();

    /// <summary>kohya sampler names -> ours (`--sample_sampler`, `--ss`).</summary>
    public static readonly IReadOnlyDictionary<string, string> Samplers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["ddim"] = "ddim", ["euler"] = "euler", ["k_euler"] = "euler", ["euler_a"] = "euler_ancestral", ["k_euler_a"] = "euler_ancestral",
        ["heun"] = "heun", ["dpm_2"] = "dpm_2", ["k_dpm_2"] = "dpm_2", ["dpm_2_a"] = "dpm_2_ancestral", ["k_dpm_2_a"] = "dpm_2_ancestral",
        ["lms"] = "lms", ["k_lms"] = "lms", ["dpmsolver++"] = "dpmpp_2m", ["dpmsolver"] = "dpmpp_2m", ["dpmsingle"] = "dpmpp_2s_ancestral",
    };

    public static string ResolveSampler(string name) => Samplers.TryGetValue(name, out var s) ? s
        : LoraCraft.Sampling.Samplers.Names.Contains(name) ? name
        : throw new UserErrorException($"sample sampler '{name}' is not available (use one of {string.Join(", ", Samplers.Keys)})");

    public static List<SamplePrompt> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"sample prompt file not found: {path}", path);
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".toml" or ".json") throw new UserErrorException($"{path}: only .txt sample prompt files are read (one prompt per line)");
        var list = new List<SamplePrompt>();
        int lineNo = 0;
        foreach (var raw in File.ReadLines(path))
        {
            lineNo++;
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            list.Add(Parse(line, $"{path}:{lineNo}"));
        }
        if (list.Count == 0) throw new UserErrorException($"{path}: no prompts (one per line; # starts a comment)");
        return list;
    }

    public static SamplePrompt Parse(string line, string where = "sample prompt")
    {
        var parts = line.Split(" --");
        var p = new SamplePrompt { Prompt = parts[0].Trim() };
        var inv = CultureInfo.InvariantCulture;
        foreach (var part in parts.Skip(1))
        {
            var m = OptionRx().Match(part.Trim());
            if (!m.Success) throw new UserErrorException($"{where}: unknown option '--{part.Trim()}' (kohya's are --n --w --h --d --s --l --ss)");
            string v = m.Groups["v"].Value.Trim();
            int Int() => int.TryParse(v, NumberStyles.Integer, inv, out var x) ? x : throw new UserErrorException($"{where}: --{m.Groups["k"].Value} needs an integer, got '{v}'");
            switch (m.Groups["k"].Value.ToLowerInvariant())
            {
                case "n": p = p with { Negative = v }; break;
                case "w": p = p with { Width = Math.Max(64, Int() / 8 * 8) }; break;
                case "h": p = p with { Height = Math.Max(64, Int() / 8 * 8) }; break;
                case "d": p = p with { Seed = long.TryParse(v, NumberStyles.Integer, inv, out var s) ? s : throw new UserErrorException($"{where}: --d needs an integer seed, got '{v}'") }; break;
                case "s": p = p with { Steps = Math.Clamp(Int(), 1, 1000) }; break;
                case "l": p = p with { Scale = double.TryParse(v, NumberStyles.Float, inv, out var l) ? l : throw new UserErrorException($"{where}: --l needs a number, got '{v}'") }; break;
                case "ss": p = p with { Sampler = ResolveSampler(v) }; break;
            }
        }
        return p;
    }

    /// <summary>kohya's sample file name: NAME_e000002_00_20240101120000[_SEED].png or NAME_000100_00_....png.</summary>
    public static string FileName(string outputName, int? epoch, int step, int index, DateTime time, long? seed) =>
        string.Create(CultureInfo.InvariantCulture,
            $"{outputName}_{(epoch is { } e ? $"e{e:D6}" : $"{step:D6}")}_{index:D2}_{time:yyyyMMddHHmmss}{(seed is { } s ? $"_{s}" : "")}.png");
}
