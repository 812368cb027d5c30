using LoraCraft.IO;

namespace LoraCraft.Models.Loading;

/// <summary>
/// The key prefixes of single-file (LDM / SGM) checkpoints and family detection from keys and
/// shapes alone, the way A1111 and ComfyUI tell SD1, SD2 and SDXL files apart.
/// </summary>
public static class CheckpointLayout
{
    public const string UNetPrefix = "model.diffusion_model.";
    public const string VaePrefix = "first_stage_model.";
    public const string Sd1TextPrefix = "cond_stage_model.transformer.text_model.";
    /// <summary>Early SD1 files (older transformers) store the CLIP tower without `text_model.`.</summary>
    public const string Sd1OldTextPrefix = "cond_stage_model.transformer.";
    public const string Sd2TextPrefix = "cond_stage_model.model.";
    public const string SdxlText1Prefix = "conditioner.embedders.0.transformer.text_model.";
    public const string SdxlText2Prefix = "conditioner.embedders.1.model.";

    /// <summary>(family, inpainting) of a single-file checkpoint, or (null, false) when the keys are not one.</summary>
    public static (ModelFamily? Family, bool Inpainting) Detect(SafetensorsHeader header)
    {
        if (!header.TryGet(UNetPrefix + "input_blocks.0.0.weight", out var convIn))
            return (null, false);
        bool inpainting = convIn.Shape.Length == 4 && convIn.Shape[1] == 9;
        if (header.Contains(UNetPrefix + "label_emb.0.0.weight") || header.Contains(SdxlText2Prefix + "ln_final.weight"))
            return (ModelFamily.Sdxl, inpainting);
        if (header.Contains(Sd2TextPrefix + "ln_final.weight"))
            return (ModelFamily.Sd2, inpainting);
        if (header.Contains(Sd1TextPrefix + "final_layer_norm.weight") || header.Contains(Sd1OldTextPrefix + "final_layer_norm.weight"))
            return (ModelFamily.Sd1, inpainting);
        // UNet-only file: SD2 uses linear transformer projections and a wider context.
        var attn2 = header.Tensors.FirstOrDefault(t => t.Name.StartsWith(UNetPrefix, StringComparison.Ordinal)
                                                      && t.Name.EndsWith("attn2.to_k.weight", StringComparison.Ordinal));
        if (attn2 is null) return (null, false);
        return (attn2.Shape[1] >= 1024 ? ModelFamily.Sd2 : ModelFamily.Sd1, inpainting);
    }

    /// <summary>Where an SD1 file keeps its text encoder: the usual prefix, or the early one.</summary>
    public static string Sd1TextPrefixOf(SafetensorsHeader header) =>
        header.Contains(Sd1TextPrefix + "final_layer_norm.weight") || !header.Contains(Sd1OldTextPrefix + "final_layer_norm.weight")
            ? Sd1TextPrefix : Sd1OldTextPrefix;
}
