using LoraCraft.IO;
using LoraCraft.Models;
using static TorchSharp.torch;

namespace LoraCraft.Text.Embeddings;

/// <summary>
/// A textual-inversion embedding: some vectors that stand for a word, per text encoder
/// (<c>""</c> for the one encoder of SD1/SD2, <c>clip_l</c> / <c>clip_g</c> for SDXL). Only the
/// header is read when it is listed or matched; the vectors are read when a prompt uses them.
/// A pickle file is kept as a refused entry: naming it in a prompt is a clear error, and its
/// bytes are never interpreted.
/// </summary>
public sealed class TextualInversion
{
    /// <summary>The word a prompt writes (A1111: the file stem).</summary>
    public required string Name { get; init; }
    /// <summary>The file it comes from (for a bundled embedding: the LoRA file).</summary>
    public required string Path { get; init; }
    /// <summary>Vectors it puts in place of its name (SDXL: those of clip_g, as A1111 counts).</summary>
    public required int Vectors { get; init; }
    /// <summary>Width of each encoder's vectors, by encoder key.</summary>
    public required IReadOnlyDictionary<string, int> Widths { get; init; }
    /// <summary>Why it cannot be used at all (a pickle, a malformed file), or null.</summary>
    public string? Problem { get; init; }
    /// <summary>True when it comes from a LoRA file's <c>bundle_emb.*</c> tensors.</summary>
    public bool Bundled { get; init; }
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>Tensor name in <see cref="Path"/> per encoder key.</summary>
    internal IReadOnlyDictionary<string, string> TensorNames { get; init; } = new Dictionary<string, string>();

    /// <summary>Identifies the vectors (file and name), for caches.</summary>
    public string Key => $"{Path}#{Name}";

    /// <summary>"sd1" (768), "sd2" (1024), "sdxl" (clip_l + clip_g) or null when the widths fit no known family.</summary>
    public string? Family => Widths.Count switch
    {
        1 when Widths.TryGetValue("", out int w) => w == 768 ? "sd1" : w == 1024 ? "sd2" : null,
        2 when Widths.ContainsKey("clip_l") && Widths.ContainsKey("clip_g") => "sdxl",
        _ => null,
    };

    /// <summary>A1111's `shape`: the width, for SDXL the two widths added.</summary>
    public int Shape => Widths.Values.Sum();

    /// <summary>The encoder key of text encoder <paramref name="slot"/> of a model.</summary>
    public static string EncoderKey(StableDiffusionModel model, int slot) =>
        model.Family == ModelFamily.Sdxl ? (slot == 0 ? "clip_l" : "clip_g") : "";

    /// <summary>Why this embedding cannot be used with <paramref name="model"/>, or null when it can.</summary>
    public string? MismatchFor(StableDiffusionModel model)
    {
        if (Problem is not null) return Problem;
        var parts = new List<string>();
        for (int slot = 0; slot < model.TextEncoders.Count; slot++)
        {
            string key = EncoderKey(model, slot);
            int width = model.TextEncoders[slot].Model.Config.Hidden;
            if (!Widths.TryGetValue(key, out int w))
                return model.Family == ModelFamily.Sdxl
                    ? $"has no {key} vectors ({Describe()}), an SDXL model needs clip_l and clip_g"
                    : $"is an SDXL embedding (clip_l/clip_g), this {model.Family.Id()} model needs one set of {width}-wide vectors";
            if (w != width) parts.Add(key.Length == 0 ? $"its vectors are {w} wide, this {model.Family.Id()} model's text encoder takes {width}" : $"its {key} vectors are {w} wide, the model's take {width}");
        }
        return parts.Count == 0 ? null : string.Join("; ", parts);
    }

    string Describe() => string.Join(", ", Widths.Select(w => w.Key.Length == 0 ? $"width {w.Value}" : $"{w.Key} {w.Value}"));

    /// <summary>
    /// The vectors for one encoder as float32 [vectors, width], read now (the caller disposes
    /// them); a clear error when they do not fit <paramref name="width"/>.
    /// </summary>
    public Tensor Load(string encoderKey, int width)
    {
        if (Problem is not null) throw new UserErrorException($"embedding '{Name}' ({Path}) {Problem}");
        if (!TensorNames.TryGetValue(encoderKey, out var tensor) || Widths[encoderKey] != width)
        {
            string what = encoderKey.Length == 0 ? $"a text encoder of width {width}" : $"{encoderKey} vectors of width {width}";
            throw new UserErrorException($"embedding '{Name}' ({Path}) does not fit this model: it has {Describe()}, the model needs {what}");
        }
        using var file = SafetensorsFile.Open(Path);
        var v = file.Load(tensor, ScalarType.Float32);
        return v.dim() == 1 ? v.unsqueeze(0) : v;
    }

    /// <summary>Reads an embedding file's header: `.safetensors` as A1111 reads it; `.pt`/`.bin` become refused entries.</summary>
    public static TextualInversion FromFile(string path)
    {
        string name = System.IO.Path.GetFileNameWithoutExtension(path);
        string ext = System.IO.Path.GetExtension(path).ToLowerInvariant();
        if (ext != ".safetensors")
            return Refused(name, path, $"is a pickle file ({ext}), which can run code when read and is not loaded; convert it to .safetensors");
        SafetensorsHeader header;
        try { header = SafetensorsHeader.Read(path); }
        catch (SafetensorsFormatException e) { return Refused(name, path, $"is not a valid safetensors file: {e.Problem}"); }

        var byName = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var names = new Dictionary<string, string>();
        if (byName.ContainsKey("clip_l") && byName.ContainsKey("clip_g"))
        {
            names["clip_l"] = "clip_l";
            names["clip_g"] = "clip_g";
        }
        else if (header.Tensors.Count == 1) names[""] = header.Tensors[0].Name;
        else if (byName.ContainsKey("emb_params")) names[""] = "emb_params";
        else if (byName.ContainsKey("string_to_param.*")) names[""] = "string_to_param.*";
        else
            return Refused(name, path, header.Tensors.Count == 0
                ? "holds no tensor"
                : $"holds {header.Tensors.Count} tensors, none of them emb_params (SD1/SD2) or clip_l + clip_g (SDXL)");
        return Make(name, path, names, n => byName[n], header.Metadata, bundled: false);
    }

    /// <summary>
    /// The embeddings bundled in a LoRA file (`bundle_emb.NAME.string_to_param.*`,
    /// `bundle_emb.NAME.clip_l` / `.clip_g`), as A1111 and ComfyUI read them.
    /// </summary>
    public static IReadOnlyList<TextualInversion> FromLora(string loraPath)
    {
        var header = SafetensorsHeader.Read(loraPath);
        var groups = new SortedDictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        var byName = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        foreach (var t in header.Tensors)
        {
            if (!t.Name.StartsWith("bundle_emb.", StringComparison.Ordinal)) continue;
            var rest = t.Name["bundle_emb.".Length..];
            int dot = rest.IndexOf('.');
            if (dot <= 0) continue;
            string emb = rest[..dot], part = rest[(dot + 1)..];
            string key = part.StartsWith("string_to_param", StringComparison.Ordinal) ? "" : part is "clip_l" or "clip_g" ? part : "?";
            if (key == "?") continue;
            if (!groups.TryGetValue(emb, out var names)) groups[emb] = names = new();
            names[key] = t.Name;
            byName[t.Name] = t;
        }
        return groups.Select(g => Make(g.Key, loraPath, g.Value, n => byName[n], new Dictionary<string, string>(), bundled: true)).ToList();
    }

    static TextualInversion Make(string name, string path, Dictionary<string, string> names, Func<string, SafeTensorInfo> info,
                                 IReadOnlyDictionary<string, string> metadata, bool bundled)
    {
        var widths = new Dictionary<string, int>();
        int vectors = 0;
        foreach (var (key, tensor) in names)
        {
            var shape = info(tensor).Shape;
            if (shape.Length is < 1 or > 2 || shape[^1] == 0 || (shape.Length == 2 && shape[0] == 0))
                return Refused(name, path, $"has a tensor '{tensor}' of shape [{string.Join(", ", shape)}], expected [vectors, width]");
            widths[key] = (int)shape[^1];
            int count = shape.Length == 1 ? 1 : (int)shape[0];
            if (key is "" or "clip_g") vectors = count;
        }
        return new TextualInversion { Name = name, Path = path, Vectors = vectors, Widths = widths, TensorNames = names, Metadata = metadata, Bundled = bundled };
    }

    static TextualInversion Refused(string name, string path, string problem) => new()
    {
        Name = name, Path = path, Vectors = 0, Widths = new Dictionary<string, int>(), TensorNames = new Dictionary<string, string>(), Problem = problem,
    };
}
