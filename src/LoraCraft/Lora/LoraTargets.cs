using System.Globalization;
using System.Text.RegularExpressions;
using LoraCraft.Models;
using LoraCraft.Models.Loading;

namespace LoraCraft.Lora;

public enum LoraComponent { UNet, TextEncoder1, TextEncoder2 }

/// <summary>What kind of layer a target is: LoRA-style types adapt linear and convolution weights, norm types norms.</summary>
public enum LoraTargetKind { Linear, Conv, Norm }

/// <summary>
/// Where a UNet layer sits, in the two ways block weights name it: the SGM block id of
/// sd-webui-lora-block-weight (`IN00`…`IN11`, `M00`, `OUT00`…`OUT11`) and the diffusers address
/// (`down`/`mid`/`up`, block index, layer in the block; layer −1 is a block's downsampler, and
/// `in` is the input convolution, which belongs to no diffusers block).
/// </summary>
public sealed record UNetBlock(string Id, string Stage, int Index, int Layer);

/// <summary>A weight an adapter module can patch, with its layer's bias and the layer itself (the bypass slot).</summary>
public sealed record LoraTarget(LoraComponent Component, string Name, Weight Weight)
{
    public Weight? Bias { get; init; }
    /// <summary>The Linear or Conv2d holding the weight (null for norms, which have no bypass slot).</summary>
    public AdaptableLayer? Layer { get; init; }
    public LoraTargetKind Kind { get; init; }
    /// <summary>The UNet block it belongs to; null for text encoders and for the UNet's time embedding and output.</summary>
    public UNetBlock? Block { get; init; }
}

/// <summary>A patchable layer, its module key as kohya writes it for the model's family, and as diffusers/peft write it (dotted).</summary>
public sealed record LoraLayer(LoraTarget Target, string KohyaKey)
{
    /// <summary>`unet.down_blocks.0.….to_q`, `text_encoder.text_model.encoder.….q_proj`; null where diffusers has no name for the layer.</summary>
    public string? DiffusersKey { get; init; }
}

/// <summary>
/// Every name under which adapter writers refer to each patchable layer of a loaded model:
/// kohya underscore names in both UNet layouts (diffusers modules for SD1/SD2 files, SGM
/// `input_blocks_4_1_…` for SDXL files — both accepted for every family), dotted diffusers/peft
/// names, and HF CLIP names for the text encoders (even when the checkpoint stored OpenCLIP).
/// Linear and convolution layers, and the GroupNorm/LayerNorm layers LyCORIS adapts.
/// </summary>
public sealed partial class LoraTargets
{
    readonly Dictionary<string, LoraTarget> _byKey = new(StringComparer.Ordinal);
    readonly List<LoraLayer> _layers = new();
    readonly List<LoraLayer> _norms = new();
    public ModelFamily Family { get; }

    /// <summary>Every linear and convolution layer once, UNet first, in the model's weight order.</summary>
    public IReadOnlyList<LoraLayer> Layers => _layers;
    /// <summary>Every GroupNorm and LayerNorm, in the same order.</summary>
    public IReadOnlyList<LoraLayer> Norms => _norms;

    public LoraTargets(StableDiffusionModel model) : this(model.Family, model.UNet, model.TextEncoders.Select(t => t.Model).ToList()) { }

    /// <summary>The layers of a checkpoint read without its weights (tools that stream a file).</summary>
    public LoraTargets(CheckpointStructure structure) : this(structure.Family, structure.UNet, structure.TextEncoders) { }

    public LoraTargets(ModelFamily family, Models.UNet.UNetModel unet, IReadOnlyList<Models.Clip.ClipTextModel> textEncoders)
    {
        Family = family;
        int perLevel = unet.Config.ResBlocksPerLevel;
        foreach (var (module, target) in Patchable(unet, LoraComponent.UNet))
        {
            var t = target with { Block = BlockOf(module, perLevel) };
            string sgm = "lora_unet_" + Under(module);
            Add(t, sgm, "diffusion_model." + module, "model.diffusion_model." + module);
            string? diffusers = null;
            if (DiffusersNames.UNet(module + ".weight", unet.Config) is { } d)
            {
                string dm = d[..^".weight".Length];
                diffusers = "lora_unet_" + Under(dm);
                Add(t, diffusers, "unet." + dm);
            }
            // kohya names SD1/SD2 layers after diffusers modules and SDXL layers after SGM ones
            (t.Kind == LoraTargetKind.Norm ? _norms : _layers).Add(new LoraLayer(t, family == ModelFamily.Sdxl ? sgm : diffusers ?? sgm)
            {
                DiffusersKey = DiffusersNames.UNet(module + ".weight", unet.Config) is { } dn ? "unet." + dn[..^".weight".Length] : null,
            });
        }
        for (int i = 0; i < textEncoders.Count; i++)
        {
            var component = i == 0 ? LoraComponent.TextEncoder1 : LoraComponent.TextEncoder2;
            string kohya = family == ModelFamily.Sdxl ? (i == 0 ? "lora_te1_" : "lora_te2_") : "lora_te_";
            string dotted = i == 0 ? "text_encoder." : "text_encoder_2.";
            foreach (var (module, target) in Patchable(textEncoders[i], component))
            {
                string key = kohya + "text_model_" + Under(module);
                Add(target, key, dotted + "text_model." + module, dotted + module);
                (target.Kind == LoraTargetKind.Norm ? _norms : _layers).Add(new LoraLayer(target, key) { DiffusersKey = dotted + "text_model." + module });
            }
        }
    }

    public LoraTarget? Find(string key) => _byKey.GetValueOrDefault(key);

    /// <summary>The layer of <paramref name="target"/> with its names.</summary>
    public LoraLayer LayerOf(LoraTarget target)
    {
        _layerOf ??= _layers.Concat(_norms).ToDictionary(l => l.Target, new TargetIdentity());
        return _layerOf.TryGetValue(target, out var l) ? l : throw new ArgumentException("not a target of this model", nameof(target));
    }

    Dictionary<LoraTarget, LoraLayer>? _layerOf;

    /// <summary>Targets are records: two layers with equal names and shapes are still different layers.</summary>
    sealed class TargetIdentity : IEqualityComparer<LoraTarget>
    {
        public bool Equals(LoraTarget? x, LoraTarget? y) => ReferenceEquals(x, y);
        public int GetHashCode(LoraTarget obj) => System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(obj);
    }

    /// <summary>
    /// The layers of a full-size model of <paramref name="family"/> (the standard SD1.5, SD2 and
    /// SDXL architectures), for tools that rename or sort a LoRA's modules without a checkpoint.
    /// </summary>
    public static LoraTargets Standard(ModelFamily family)
    {
        var kind = family switch { ModelFamily.Sd1 => Models.Random.RandomModelKind.Sd15, ModelFamily.Sd2 => Models.Random.RandomModelKind.Sd2, _ => Models.Random.RandomModelKind.Sdxl };
        var a = Models.Random.RandomArchitecture.Of(kind, Models.Random.RandomModelSize.Full);
        // declaring the networks allocates no tensor
        return new LoraTargets(family, new Models.UNet.UNetModel(a.UNet), a.Text.Select(t => new Models.Clip.ClipTextModel(t.Config)).ToList());
    }

    /// <summary>Linear, convolution and norm layers (not embeddings), with their module names.</summary>
    static IEnumerable<(string Module, LoraTarget Target)> Patchable(Net net, LoraComponent component)
    {
        foreach (var (name, module) in net.Modules())
        {
            if (module is AdaptableLayer layer)
            {
                var kind = layer.WeightSlot.Shape.Length == 4 ? LoraTargetKind.Conv : LoraTargetKind.Linear;
                yield return (name, new LoraTarget(component, name + ".weight", layer.WeightSlot) { Bias = layer.BiasSlot, Layer = layer, Kind = kind });
            }
            else if (module is GroupNorm or LayerNorm)
            {
                var weights = module.Weights().ToDictionary(w => w.Name, w => w.Weight, StringComparer.Ordinal);
                yield return (name, new LoraTarget(component, name + ".weight", weights["weight"]) { Bias = weights.GetValueOrDefault("bias"), Kind = LoraTargetKind.Norm });
            }
        }
    }

    [GeneratedRegex(@"^(input_blocks|middle_block|output_blocks)\.(\d+)\.", RegexOptions.CultureInvariant)]
    private static partial Regex BlockRx();

    /// <summary>The block of an SGM module name (`input_blocks.4.1.proj_in` -> IN04, down block 1, layer 0).</summary>
    public static UNetBlock? BlockOf(string sgmModule, int perLevel)
    {
        var m = BlockRx().Match(sgmModule);
        if (!m.Success) return null;
        int k = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        switch (m.Groups[1].Value)
        {
            case "middle_block": return new UNetBlock("M00", "mid", 0, 0);
            case "input_blocks":
                string id = "IN" + k.ToString("00", CultureInfo.InvariantCulture);
                if (k == 0) return new UNetBlock(id, "in", 0, 0);
                int level = (k - 1) / (perLevel + 1), j = (k - 1) % (perLevel + 1);
                return new UNetBlock(id, "down", level, j == perLevel ? -1 : j);
            default:
                return new UNetBlock("OUT" + k.ToString("00", CultureInfo.InvariantCulture), "up", k / (perLevel + 1), k % (perLevel + 1));
        }
    }

    void Add(LoraTarget target, params string[] keys)
    {
        foreach (var k in keys) _byKey.TryAdd(k, target);
    }

    static string Under(string dotted) => dotted.Replace('.', '_');
}
