using System.Globalization;
using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora.Adapters;
using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Tools;

/// <summary>The two namings of LoRA files: kohya/A1111 (`lora_unet_…`, SGM blocks for SDXL) and peft/diffusers (`unet.down_blocks.….lora_A`).</summary>
public enum LoraNaming { Kohya, Peft }

public sealed record ConvertRequest(string Input, LoraNaming To, string Output)
{
    /// <summary>A checkpoint whose architecture names the layers; null: the standard model of the LoRA's family.</summary>
    public string? Model { get; init; }
    public ModelFamily? Family { get; init; }
    public bool Force { get; init; }
}

public sealed record ConvertResult(string Output, int Modules);

/// <summary>
/// Renames a LoRA between kohya and peft/diffusers keys (SDXL diffusers and SGM block names
/// both map to kohya's), keeping every tensor as stored and the alphas: kohya `.alpha` tensors
/// become peft's `lora_adapter_metadata` (r, lora_alpha, rank_pattern, alpha_pattern per model
/// part) and back. To kohya any adapter type converts; peft holds LoRA/LoCon only.
/// </summary>
public static class LoraConvert
{
    public static ConvertResult Run(ConvertRequest r)
    {
        if (!File.Exists(r.Input)) throw new FileNotFoundException($"LoRA not found: {r.Input}", r.Input);
        ToolFiles.CheckOutput(r.Output, r.Force, r.Input);
        using var file = SafetensorsFile.Open(r.Input);
        var layout = AdapterFormats.Layout(file.Tensors.Select(t => (t.Name, t.Shape)));
        if (layout.Unknown.Count > 0)
            throw new UserErrorException($"{r.Input}: {layout.Unknown.Count} tensors belong to no module (e.g. {string.Join(", ", layout.Unknown.Take(3))}); converting would drop them");
        using var lora = LoraFile.Load(r.Input);
        var modules = lora.Modules.ToDictionary(m => m.Key, StringComparer.Ordinal);
        var targets = ToolTargets.For(lora, r.Model, r.Family);
        var layers = ToolTargets.Layers(lora, targets);
        var tensors = new List<LazyTensor>();
        var peft = new Dictionary<string, List<(string Module, long Rank, float Alpha)>>(StringComparer.Ordinal);
        foreach (var m in layout.Modules)
        {
            var module = modules[m.Key];
            var layer = layers[m.Key];
            if (r.To == LoraNaming.Peft)
            {
                if (module is not LoraAdapter { Mid: null } l || module.IsDora)
                    throw new UserErrorException($"{m.Key} is {module.Algorithm.Id()}{(module.IsDora ? " with DoRA" : module is LoraAdapter ? " with a CP core" : "")}: peft files hold plain LoRA/LoCon only");
                string key = layer.DiffusersKey ?? throw new UserErrorException($"{m.Key}: diffusers has no name for {layer.Target.Name}");
                tensors.Add(Copy(file, m.Parts[LoraAdapter.DownPart], key + ".lora_A.weight"));
                tensors.Add(Copy(file, m.Parts[LoraAdapter.UpPart], key + ".lora_B.weight"));
                int dot = key.IndexOf('.');
                string component = key[..dot];
                if (!peft.TryGetValue(component, out var list)) peft[component] = list = new();
                list.Add((key[(dot + 1)..], l.Down.shape[0], module.Alpha ?? l.Down.shape[0]));
                continue;
            }
            foreach (var (part, (name, _)) in m.Parts)
            {
                if (part == AdapterFormats.Alpha) continue;
                string suffix = part switch
                {
                    LoraAdapter.DownPart or LoraAdapter.UpPart or LoraAdapter.MidPart => "." + part + ".weight",
                    AdapterFormats.DoraMagnitude => "." + AdapterFormats.DoraScale,
                    _ => "." + part,
                };
                // peft's magnitude is one value per output row: [out, 1] says so to A1111 and us
                tensors.Add(part == AdapterFormats.DoraMagnitude
                    ? new LazyTensor(layer.KohyaKey + suffix, file.Info(name).DType, [file.Info(name).Shape[0], 1], () => file.Load(name).reshape(-1, 1))
                    : Copy(file, (name, file.Info(name).Shape), layer.KohyaKey + suffix));
            }
            if (module.Alpha is { } alpha)
            {
                var dtype = m.Parts.TryGetValue(AdapterFormats.Alpha, out var a) ? file.Info(a.Tensor).DType : file.Info(m.Parts.Values.First().Tensor).DType;
                tensors.Add(new LazyTensor(layer.KohyaKey + ".alpha", dtype, [], () => torch.tensor(alpha).to(SafeDTypes.ToTorch(dtype)!.Value)));
            }
        }
        var metadata = file.Metadata.Where(p => p.Key != "lora_adapter_metadata").ToDictionary(p => p.Key, p => p.Value);
        if (r.To == LoraNaming.Peft) metadata["lora_adapter_metadata"] = PeftMetadata(peft);
        SafetensorsWriter.WriteLazy(r.Output, tensors.OrderBy(t => t.Name, StringComparer.Ordinal), metadata);
        return new ConvertResult(r.Output, layout.Modules.Count);
    }

    static LazyTensor Copy(SafetensorsFile file, (string Tensor, long[] Shape) part, string name) =>
        new(name, file.Info(part.Tensor).DType, part.Shape, () => file.Load(part.Tensor));

    /// <summary>peft's adapter config per model part, flattened as diffusers writes it (`unet.r`, `unet.lora_alpha`, ...).</summary>
    static string PeftMetadata(Dictionary<string, List<(string Module, long Rank, float Alpha)>> parts)
    {
        var config = new SortedDictionary<string, object>(StringComparer.Ordinal);
        foreach (var (component, modules) in parts)
        {
            long r = modules.GroupBy(m => m.Rank).OrderByDescending(g => g.Count()).ThenByDescending(g => g.Key).First().Key;
            float alpha = modules.GroupBy(m => m.Alpha).OrderByDescending(g => g.Count()).ThenByDescending(g => g.Key).First().Key;
            config[component + ".peft_type"] = "LORA";
            config[component + ".r"] = r;
            config[component + ".lora_alpha"] = alpha;
            config[component + ".rank_pattern"] = modules.Where(m => m.Rank != r).ToDictionary(m => m.Module, m => m.Rank);
            config[component + ".alpha_pattern"] = modules.Where(m => m.Alpha != alpha).ToDictionary(m => m.Module, m => m.Alpha);
            config[component + ".target_modules"] = modules.Select(m => m.Module[(m.Module.LastIndexOf('.') + 1)..]).Distinct().Order(StringComparer.Ordinal).ToList();
        }
        return JsonSerializer.Serialize(config);
    }
}
