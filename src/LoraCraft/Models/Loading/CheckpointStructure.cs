using LoraCraft.IO;
using LoraCraft.Models.Clip;
using LoraCraft.Models.UNet;
using static TorchSharp.torch;

namespace LoraCraft.Models.Loading;

/// <summary>
/// The UNet and text encoders of a single-file checkpoint built from its header's shapes alone —
/// no weight is read, building them allocates nothing — with where each weight is stored. Tools
/// that stream a checkpoint tensor by tensor (merging LoRAs in, extracting them) use it to name
/// layers as the loader does, and to read or write one weight at a time.
/// </summary>
public sealed class CheckpointStructure
{
    readonly SafetensorsHeader _header;
    readonly (string Prefix, Func<string, WeightRecipe?> Names)[] _text;

    CheckpointStructure(SafetensorsHeader header, ModelFamily family, UNetModel unet, IReadOnlyList<ClipTextModel> text,
                        (string, Func<string, WeightRecipe?>)[] textSources)
    {
        _header = header;
        Family = family;
        UNet = unet;
        TextEncoders = text;
        _text = textSources;
    }

    public ModelFamily Family { get; }
    public UNetModel UNet { get; }
    /// <summary>Every stored layer (SD2's last one too, which generation does not use).</summary>
    public IReadOnlyList<ClipTextModel> TextEncoders { get; }

    public static CheckpointStructure Read(SafetensorsHeader header, string path)
    {
        var (family, _) = CheckpointLayout.Detect(header);
        if (family is null)
            throw new ModelLoadException(path, "not a Stable Diffusion checkpoint (no 'model.diffusion_model.input_blocks.0.0.weight'; a LoRA or VAE file?)");
        var fam = family.Value;
        var sources = fam switch
        {
            ModelFamily.Sd1 => new[] { (CheckpointLayout.Sd1TextPrefixOf(header), (Func<string, WeightRecipe?>)(n => new WeightRecipe(n))) },
            ModelFamily.Sd2 => [(CheckpointLayout.Sd2TextPrefix, DiffusersNames.OpenClip)],
            _ => [(CheckpointLayout.SdxlText1Prefix, n => new WeightRecipe(n)), (CheckpointLayout.SdxlText2Prefix, DiffusersNames.OpenClip)],
        };
        // widths and layer counts are in the shapes; activation and end token do not change them
        var text = sources.Select(s => new ClipTextModel(ModelConfigs.ClipFromShapes(header, s.Item1, s.Item2, ClipActivation.Gelu, 0))).ToList();
        var unetConfig = ModelConfigs.UNetFromShapes(header, CheckpointLayout.UNetPrefix, fam);
        if (unetConfig.AdmInChannels > 0)
            unetConfig = unetConfig with { AdditionTimeEmbedDim = (unetConfig.AdmInChannels - text[^1].Config.ProjectionDim) / 6 };
        return new CheckpointStructure(header, fam, new UNetModel(unetConfig), text, sources);
    }

    /// <summary>
    /// Where weight <paramref name="name"/> of the UNet (<paramref name="component"/> 0) or of text
    /// encoder <paramref name="component"/> is stored; null when the file does not hold it.
    /// </summary>
    public WeightRecipe? RecipeOf(int component, string name)
    {
        var recipe = component == 0 ? new WeightRecipe(CheckpointLayout.UNetPrefix + name)
            : _text[component - 1].Names(name) is { } r ? r with { SourceKey = _text[component - 1].Prefix + r.SourceKey } : null;
        return recipe is not null && _header.Contains(recipe.SourceKey) ? recipe : null;
    }

    /// <summary>The stored tensor of <paramref name="recipe"/> as our weight, in float32 (a third of a fused in_proj, ...).</summary>
    public static Tensor Read(SafetensorsFile file, WeightRecipe recipe)
    {
        using var scope = NewDisposeScope();
        var t = file.Load(recipe.SourceKey, ScalarType.Float32);
        t = recipe.Apply(t);
        return t.contiguous().MoveToOuterDisposeScope();
    }
}
