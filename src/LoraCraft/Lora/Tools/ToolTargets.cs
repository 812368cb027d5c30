using LoraCraft.IO;
using LoraCraft.Models;
using LoraCraft.Models.Loading;

namespace LoraCraft.Lora.Tools;

/// <summary>The layer names a tool maps a LoRA's modules onto: a given checkpoint's, or a standard model's of the LoRA's family.</summary>
public static class ToolTargets
{
    /// <param name="model">a single-file checkpoint (its architecture, weights are not read); null: the standard one of the family</param>
    public static LoraTargets For(LoraFile lora, string? model, ModelFamily? family)
    {
        if (model is not null)
        {
            if (!File.Exists(model)) throw new FileNotFoundException($"model not found: {model}", model);
            return new LoraTargets(CheckpointStructure.Read(SafetensorsHeader.Read(model), model));
        }
        var f = family ?? LoraFamilyGuess.Guess(lora)
            ?? throw new UserErrorException($"{lora.Path}: the family the LoRA is for cannot be told from it; give the family (sd1, sd2, sdxl) or a model");
        return LoraTargets.Standard(f);
    }

    /// <summary>Every module's layer, or a refusal naming the first that match none.</summary>
    public static Dictionary<string, LoraLayer> Layers(LoraFile lora, LoraTargets targets)
    {
        var layers = new Dictionary<string, LoraLayer>(StringComparer.Ordinal);
        var missing = new List<string>();
        foreach (var m in lora.Modules)
        {
            if (targets.Find(m.Key) is { } t) layers[m.Key] = targets.LayerOf(t);
            else missing.Add(m.Key);
        }
        if (missing.Count > 0)
            throw new UserErrorException($"{lora.Path}: {missing.Count} modules match no layer of this {targets.Family.Id()} model (e.g. {string.Join(", ", missing.Take(3))}); a model of another architecture?");
        return layers;
    }

    public static ModelFamily ParseFamily(string name) => name switch
    {
        "sd1" or "sd15" => ModelFamily.Sd1,
        "sd2" => ModelFamily.Sd2,
        "sdxl" => ModelFamily.Sdxl,
        _ => throw new UserErrorException($"family must be sd1, sd2 or sdxl, got '{name}'"),
    };
}
