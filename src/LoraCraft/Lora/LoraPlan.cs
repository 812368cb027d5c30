using LoraCraft.Lora.Adapters;
using LoraCraft.Models;

namespace LoraCraft.Lora;

/// <summary>Which of a file's modules patch which weights of one model, and what did not map.</summary>
public sealed class LoraPlan
{
    public required LoraFile File { get; init; }
    public required IReadOnlyList<(AdapterModule Module, LoraTarget Target)> Matched { get; init; }
    public required IReadOnlyList<string> Unmatched { get; init; }

    public int Count(LoraComponent c) => Matched.Count(m => m.Target.Component == c);

    /// <summary>
    /// Maps a file onto a model: each module onto the layer its key names, if the module fits that
    /// layer's shape (a norm type needs a norm, a bias difference a layer with a bias). Shape mismatches count as unmatched (an SD1 LoRA's 768-wide
    /// cross-attention cannot patch SDXL's 2048-wide one). Throws when the file names another
    /// base family, or when nothing maps at all.
    /// </summary>
    public static LoraPlan Create(LoraFile file, LoraTargets targets)
    {
        // Widths usually tell families apart, but not always (tiny or pruned models): a file
        // that says which base it was trained on is refused on another family.
        if (LoraFamilyGuess.Guess(file) is { } made && made != targets.Family)
            throw new LoraFormatException(file.Path, $"the LoRA looks made for {made.Id()}, but the model is {targets.Family.Id()}", ErrorKind.Conflict);
        var matched = new List<(AdapterModule, LoraTarget)>();
        var unmatched = new List<string>();
        foreach (var m in file.Modules)
        {
            var t = targets.Find(m.Key);
            if (t is not null && m.Fits(t.Weight.Shape, t.Bias?.Shape)) matched.Add((m, t));
            else unmatched.Add(m.Key);
        }
        unmatched.AddRange(file.UnknownKeys);
        if (matched.Count == 0)
            throw new LoraFormatException(file.Path,
                $"none of its {file.Modules.Count} modules fit this {targets.Family.Id()} model; e.g. {string.Join(", ", file.Modules.Take(2).Select(x => x.Key))}", ErrorKind.Conflict);
        return new LoraPlan { File = file, Matched = matched, Unmatched = unmatched };
    }
}

/// <summary>
/// Guesses a LoRA's base family from its key names, widths and metadata. Needs shapes only, so a
/// listing can call it with a safetensors header and never load a tensor.
/// </summary>
public static class LoraFamilyGuess
{
    public static ModelFamily? Guess(LoraFile file) => Guess(file.Modules.Select(m => (m.Key, WidthShape(m.Rank, m.InputWidth))), file.Metadata);

    /// <summary>A [rank, input width] stand-in for a LoRA down factor, for modules of any type.</summary>
    public static long[] WidthShape(long? rank, long? inputWidth) => inputWidth is { } w ? [rank ?? 0, w] : [rank ?? 0];

    public static ModelFamily? Guess(IEnumerable<(string Key, long[] DownShape)> modules, IReadOnlyDictionary<string, string> metadata)
    {
        if (metadata.TryGetValue("modelspec.architecture", out var arch))
        {
            if (arch.Contains("xl", StringComparison.OrdinalIgnoreCase)) return ModelFamily.Sdxl;
            if (arch.Contains("v2", StringComparison.OrdinalIgnoreCase)) return ModelFamily.Sd2;
            if (arch.Contains("v1", StringComparison.OrdinalIgnoreCase)) return ModelFamily.Sd1;
        }
        if (metadata.TryGetValue("ss_base_model_version", out var v))
        {
            if (v.Contains("xl", StringComparison.OrdinalIgnoreCase)) return ModelFamily.Sdxl;
            if (v.Contains("v2", StringComparison.OrdinalIgnoreCase)) return ModelFamily.Sd2;
            if (v.Contains("v1", StringComparison.OrdinalIgnoreCase)) return ModelFamily.Sd1;
        }
        var list = modules.ToList();
        if (list.Any(m => m.Key.StartsWith("lora_te2_", StringComparison.Ordinal) || m.Key.StartsWith("text_encoder_2.", StringComparison.Ordinal)))
            return ModelFamily.Sdxl;
        // the cross-attention key projection's input is the text width: 768 SD1, 1024 SD2, 2048 SDXL
        foreach (var (key, shape) in list)
            if ((key.EndsWith("attn2_to_k", StringComparison.Ordinal) || key.EndsWith("attn2.to_k", StringComparison.Ordinal)) && shape.Length >= 2)
                return shape[1] switch { 768 => ModelFamily.Sd1, 1024 => ModelFamily.Sd2, 2048 => ModelFamily.Sdxl, _ => null };
        // a lone text encoder (SDXL files say te1/te2) is CLIP-L, 768 wide, in SD1 and OpenCLIP-H, 1024, in SD2
        foreach (var (key, shape) in list)
            if ((key.StartsWith("lora_te_", StringComparison.Ordinal) || key.StartsWith("text_encoder.", StringComparison.Ordinal))
                && key.EndsWith("q_proj", StringComparison.Ordinal) && shape.Length == 2)
                return shape[1] switch { 768 => ModelFamily.Sd1, 1024 => ModelFamily.Sd2, _ => null };
        return null;
    }
}
