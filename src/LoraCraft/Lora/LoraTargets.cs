using LoraCraft.Models;
using LoraCraft.Models.Loading;

namespace LoraCraft.Lora;

public enum LoraComponent { UNet, TextEncoder1, TextEncoder2 }

/// <summary>A weight a LoRA module can patch.</summary>
public sealed record LoraTarget(LoraComponent Component, string Name, Weight Weight);

/// <summary>A patchable layer and its module key as kohya writes it for the model's family.</summary>
public sealed record LoraLayer(LoraTarget Target, string KohyaKey);

/// <summary>
/// Every name under which LoRA writers refer to each patchable layer of a loaded model:
/// kohya underscore names in both UNet layouts (diffusers modules for SD1/SD2 files, SGM
/// `input_blocks_4_1_…` for SDXL files — both accepted for every family), dotted diffusers/peft
/// names, and HF CLIP names for the text encoders (even when the checkpoint stored OpenCLIP).
/// </summary>
public sealed class LoraTargets
{
    readonly Dictionary<string, LoraTarget> _byKey = new(StringComparer.Ordinal);
    readonly List<LoraLayer> _layers = new();
    public ModelFamily Family { get; }

    /// <summary>Every patchable layer once, UNet first, in the model's weight order.</summary>
    public IReadOnlyList<LoraLayer> Layers => _layers;

    public LoraTargets(StableDiffusionModel model)
    {
        Family = model.Family;
        foreach (var (name, weight) in Patchable(model.UNet))
        {
            var target = new LoraTarget(LoraComponent.UNet, name, weight);
            string module = name[..^".weight".Length];
            string sgm = "lora_unet_" + Under(module);
            Add(target, sgm, "diffusion_model." + module, "model.diffusion_model." + module);
            string? diffusers = null;
            if (DiffusersNames.UNet(name, model.UNet.Config) is { } d)
            {
                string dm = d[..^".weight".Length];
                diffusers = "lora_unet_" + Under(dm);
                Add(target, diffusers, "unet." + dm);
            }
            // kohya names SD1/SD2 layers after diffusers modules and SDXL layers after SGM ones
            _layers.Add(new LoraLayer(target, model.Family == ModelFamily.Sdxl ? sgm : diffusers ?? sgm));
        }
        for (int i = 0; i < model.TextEncoders.Count; i++)
        {
            var component = i == 0 ? LoraComponent.TextEncoder1 : LoraComponent.TextEncoder2;
            string kohya = model.Family == ModelFamily.Sdxl ? (i == 0 ? "lora_te1_" : "lora_te2_") : "lora_te_";
            string dotted = i == 0 ? "text_encoder." : "text_encoder_2.";
            foreach (var (name, weight) in Patchable(model.TextEncoders[i].Model))
            {
                string module = name[..^".weight".Length];
                var target = new LoraTarget(component, name, weight);
                string key = kohya + "text_model_" + Under(module);
                Add(target, key, dotted + "text_model." + module, dotted + module);
                _layers.Add(new LoraLayer(target, key));
            }
        }
    }

    public LoraTarget? Find(string key) => _byKey.GetValueOrDefault(key);

    /// <summary>Linear and convolution weights: what LoRA and LoCon adapt (not norms or embeddings).</summary>
    static IEnumerable<(string, Weight)> Patchable(Net net) =>
        net.Weights().Where(w => w.Name.EndsWith(".weight", StringComparison.Ordinal) && w.Weight.Shape.Length is 2 or 4
                                 && !w.Name.Contains("embedding", StringComparison.Ordinal));

    void Add(LoraTarget target, params string[] keys)
    {
        foreach (var k in keys) _byKey.TryAdd(k, target);
    }

    static string Under(string dotted) => dotted.Replace('.', '_');
}
