using System.Globalization;
using LoraCraft.IO;

namespace LoraCraft.Lora;

/// <summary>A LoRA chosen for a generation: where it came from and how it is applied.</summary>
/// <param name="FromPrompt">Named by a tag in the prompt (so the recorded prompt already carries it).</param>
public sealed record SelectedLora(string Name, string Path, LoraTag Tag, bool FromPrompt);

/// <summary>
/// Turns prompt tags and structured choices into LoRA files: by name in the library (exact, then
/// any case), by path where allowed (the CLI; never from an HTTP request), or — for PNGs made
/// elsewhere, whose LoRAs may have been renamed — by A1111's LoRA hash.
/// </summary>
public sealed class LoraSelector(LoraLibrary library, FileHashes hashes, bool allowPaths)
{
    /// <param name="fromPromptTags">tags found in the prompt and negative prompt</param>
    /// <param name="fromOptions">structured choices (ComfyUI's LoraLoader, --lora, the native API's list)</param>
    /// <param name="knownHashes">name -> hash from a PNG's `Lora hashes`, used when a name is not in the library</param>
    public IReadOnlyList<SelectedLora> Select(IEnumerable<LoraTag> fromPromptTags, IEnumerable<LoraTag> fromOptions,
                                              IReadOnlyDictionary<string, string>? knownHashes = null)
    {
        var result = new List<SelectedLora>();
        foreach (var tag in fromPromptTags) result.Add(Make(tag, ResolveTagName(tag.Name, knownHashes), fromPrompt: true));
        foreach (var tag in fromOptions)
            result.Add(Make(tag, allowPaths ? library.ResolveFileOrName(tag.Name) : ResolveTagName(tag.Name, knownHashes), fromPrompt: false));
        return result;
    }

    string ResolveTagName(string name, IReadOnlyDictionary<string, string>? knownHashes)
    {
        try
        {
            return library.Resolve(name);
        }
        catch (UserErrorException) when (knownHashes is not null && knownHashes.TryGetValue(name, out var hash))
        {
            return library.FindByHash(hash, hashes)
                   ?? throw new UserErrorException(ErrorKind.NotFound, $"LoRA '{name}' (hash {hash}) is neither named nor hashed like any file in {library.Root}");
        }
    }

    static SelectedLora Make(LoraTag tag, string path, bool fromPrompt)
    {
        var full = System.IO.Path.GetFullPath(path);
        return new SelectedLora(System.IO.Path.GetFileNameWithoutExtension(full), full, tag, fromPrompt);
    }

    /// <summary>A1111's `Lora hashes` value: "name: hash, name: hash".</summary>
    public string HashesText(IEnumerable<SelectedLora> selected) =>
        string.Join(", ", selected.DistinctBy(s => s.Name).Select(s => $"{s.Name}: {hashes.LoraHash(s.Path)}"));

    /// <summary>Parses a `Lora hashes` value back into name -> hash.</summary>
    public static Dictionary<string, string> ParseHashes(string? text)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        if (string.IsNullOrWhiteSpace(text)) return map;
        foreach (var part in text.Split(','))
        {
            int colon = part.LastIndexOf(':');
            if (colon > 0) map[part[..colon].Trim()] = part[(colon + 1)..].Trim();
        }
        return map;
    }

    /// <summary>The prompt tag that reproduces a command-line LoRA (so a PNG's prompt reruns it).</summary>
    public static string TagFor(SelectedLora s)
    {
        var t = s.Tag;
        string te = t.TextEncoderSchedule?.ToString() ?? Num(t.TextEncoder), unet = t.UNetSchedule?.ToString() ?? Num(t.UNet);
        var parts = new List<string> { "lora", s.Name, te };
        if (unet != te) parts.Add(unet);
        if (t.Blocks?.TagText is { } b) parts.Add(b);
        if (t.Active is { } range) parts.Add(range.ToString());
        return "<" + string.Join(":", parts) + ">";
    }

    static string Num(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
}
