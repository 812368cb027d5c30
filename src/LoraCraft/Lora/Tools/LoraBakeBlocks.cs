using LoraCraft.IO;
using LoraCraft.Lora.Adapters;
using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Tools;

public sealed record BakeBlocksRequest(string Input, LoraBlockWeights Blocks, string Output)
{
    public string? Model { get; init; }
    public ModelFamily? Family { get; init; }
    public bool Force { get; init; }
}

public sealed record BakeBlocksResult(string Output, int Scaled, int Dropped, int Kept);

/// <summary>
/// Makes block weights permanent: each module's update is multiplied by its block's weight by
/// scaling one factor (LoRA's up, LoHa's w1a, LoKr's w1, (IA)³'s vector, full and norm
/// differences, GLoRA's a1 and b1); a module at weight 0 is left out, one at 1 copied. OFT, BOFT
/// and DoRA updates are not linear in their tensors and are refused at weights other than 0 or 1.
/// Tensor names and types are kept.
/// </summary>
public static class LoraBakeBlocks
{
    public static BakeBlocksResult Run(BakeBlocksRequest r)
    {
        if (!File.Exists(r.Input)) throw new FileNotFoundException($"LoRA not found: {r.Input}", r.Input);
        ToolFiles.CheckOutput(r.Output, r.Force, r.Input);
        using var file = SafetensorsFile.Open(r.Input);
        var layout = AdapterFormats.Layout(file.Tensors.Select(t => (t.Name, t.Shape)));
        using var lora = LoraFile.Load(r.Input);
        var modules = lora.Modules.ToDictionary(m => m.Key, StringComparer.Ordinal);
        var layers = ToolTargets.Layers(lora, ToolTargets.For(lora, r.Model, r.Family));
        var scaleOf = new Dictionary<string, double>(StringComparer.Ordinal);   // tensor name -> factor
        var drop = new HashSet<string>(StringComparer.Ordinal);
        int scaled = 0, dropped = 0, kept = 0;
        foreach (var m in layout.Modules)
        {
            var module = modules[m.Key];
            double w = r.Blocks.WeightFor(layers[m.Key].Target);
            if (w == 1) { kept++; continue; }
            if (w == 0)
            {
                foreach (var p in m.Parts.Values) drop.Add(p.Tensor);
                dropped++;
                continue;
            }
            if (module is OftAdapter or BoftAdapter || module.IsDora)
                throw new UserErrorException($"{m.Key} is {module.Algorithm.Id()}{(module.IsDora ? " with DoRA" : "")}: its update is not linear in its tensors, so a block weight of {w} cannot be baked (0 and 1 can)");
            string[] parts = module switch
            {
                LoraAdapter => [LoraAdapter.UpPart],
                LoHaAdapter => ["hada_w1_a"],
                LoKrAdapter => [m.Parts.ContainsKey("lokr_w1") ? "lokr_w1" : "lokr_w1_a"],
                IA3Adapter => ["weight"],
                FullDiffAdapter => ["diff", "diff_b"],
                NormAdapter => ["w_norm", "b_norm"],
                GLoraAdapter => ["a1.weight", "b1.weight"],
                _ => throw new UserErrorException($"{m.Key}: {module.Algorithm.Id()} cannot be baked"),
            };
            foreach (var p in parts.Where(m.Parts.ContainsKey)) scaleOf[m.Parts[p].Tensor] = w;
            scaled++;
        }
        var tensors = file.Tensors.Where(t => !drop.Contains(t.Name)).Select(t => new LazyTensor(t.Name, t.DType, t.Shape, () =>
        {
            var x = file.Load(t.Name);
            if (!scaleOf.TryGetValue(t.Name, out var w)) return x;
            using (x) return x.to(ScalarType.Float32).Mul(w).to(x.dtype);
        }));
        var metadata = file.Metadata.ToDictionary(p => p.Key, p => p.Value);
        metadata["loracraft.baked_blocks"] = r.Blocks.Text;
        SafetensorsWriter.WriteLazy(r.Output, tensors, metadata);
        return new BakeBlocksResult(r.Output, scaled, dropped, kept);
    }
}
