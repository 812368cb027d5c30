using System.Text;
using TorchSharp;

namespace LoraCraft.Training;

/// <summary>How a subset's captions are varied each time an image is used (kohya's subset caption settings).</summary>
public sealed record CaptionOptions
{
    public bool Shuffle { get; init; }
    /// <summary>Leading tokens kept in place when shuffling (`keep_tokens`).</summary>
    public int KeepTokens { get; init; }
    /// <summary>Everything before this marker is kept in place (`keep_tokens_separator`), when present.</summary>
    public string? KeepTokensSeparator { get; init; }
    public string Separator { get; init; } = ",";
    /// <summary>Probability that the whole caption is dropped (empty) for one use (`caption_dropout_rate`).</summary>
    public double DropoutRate { get; init; }
    /// <summary>Probability that each (flexible) tag is dropped (`caption_tag_dropout_rate`).</summary>
    public double TagDropoutRate { get; init; }
    public string? Prefix { get; init; }
    public string? Suffix { get; init; }
}

/// <summary>Caption files (kohya's `read_caption`) and the per-use caption (kohya's `process_caption`).</summary>
public static class Captions
{
    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The caption file of an image for an extension (`.txt`, `.caption`), or null.</summary>
    public static string? FileFor(string imagePath, string extension)
    {
        if (!extension.StartsWith('.')) extension = "." + extension;
        string path = Path.ChangeExtension(imagePath, null) + extension;
        return File.Exists(path) ? path : null;
    }

    /// <summary>The first line of a caption file, trimmed; UTF-8 only (a clear error names the file otherwise).</summary>
    public static string Read(string path)
    {
        string text;
        try { text = StrictUtf8.GetString(File.ReadAllBytes(path)); }
        catch (DecoderFallbackException) { throw new UserErrorException($"{path}: the caption is not UTF-8 text (save it as UTF-8)"); }
        if (text.Length > 0 && text[0] == '\uFEFF') text = text[1..];
        int nl = text.IndexOfAny(['\r', '\n']);
        return (nl >= 0 ? text[..nl] : text).Trim();
    }

    /// <summary>
    /// The caption for one use: prefix/suffix, whole-caption dropout, then (when shuffling or
    /// dropping tags) the tags split at the separator, the first <c>KeepTokens</c> (or the part before
    /// the keep separator) fixed, the rest shuffled, joined with ", ". Random draws come from
    /// <paramref name="random"/> (the step's generator).
    /// </summary>
    public static string Process(string caption, CaptionOptions o, torch.Generator random)
    {
        if (!string.IsNullOrEmpty(o.Prefix)) caption = o.Prefix + " " + caption;
        if (!string.IsNullOrEmpty(o.Suffix)) caption = caption + " " + o.Suffix;
        if (o.DropoutRate > 0 && Uniform(random) < o.DropoutRate) return "";
        if (!o.Shuffle && o.TagDropoutRate <= 0) return caption;
        List<string> fixedTokens, flex;
        if (!string.IsNullOrEmpty(o.KeepTokensSeparator) && caption.Contains(o.KeepTokensSeparator, StringComparison.Ordinal))
        {
            int at = caption.IndexOf(o.KeepTokensSeparator, StringComparison.Ordinal);
            fixedTokens = Split(caption[..at], o.Separator).Where(t => t.Length > 0).ToList();
            flex = Split(caption[(at + o.KeepTokensSeparator.Length)..], o.Separator).Where(t => t.Length > 0).ToList();
        }
        else
        {
            var tokens = Split(caption.Trim(), o.Separator);
            int keep = Math.Min(Math.Max(0, o.KeepTokens), tokens.Count);
            fixedTokens = tokens.Take(keep).ToList();
            flex = tokens.Skip(keep).ToList();
        }
        if (o.Shuffle && flex.Count > 1)
        {
            using var perm = torch.randperm(flex.Count, generator: random);
            var order = perm.data<long>().ToArray();
            flex = order.Select(i => flex[(int)i]).ToList();
        }
        if (o.TagDropoutRate > 0) flex = flex.Where(_ => Uniform(random) >= o.TagDropoutRate).ToList();
        return string.Join(", ", fixedTokens.Concat(flex));
    }

    static List<string> Split(string text, string separator) => text.Split(separator).Select(t => t.Trim()).ToList();

    static double Uniform(torch.Generator random)
    {
        using var t = torch.rand(1, torch.ScalarType.Float64, generator: random);
        return t.item<double>();
    }

    /// <summary>kohya's tag frequency of one folder: each comma-separated tag, lower-cased, counted once per caption.</summary>
    public static void CountTags(Dictionary<string, int> frequency, string caption)
    {
        foreach (var raw in caption.Split(','))
        {
            var tag = raw.Trim();
            if (tag.Length == 0) continue;
            tag = tag.ToLowerInvariant();
            frequency[tag] = frequency.GetValueOrDefault(tag) + 1;
        }
    }
}
