using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora.Adapters;
using LoraCraft.Models.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Tools;

/// <summary>One LoRA to bake in, at its strengths (UNet, text encoders).</summary>
public sealed record LoraStrength(string Path, double UNet, double TextEncoder);

/// <summary>`lora merge-into`: a checkpoint with LoRAs baked in.</summary>
public sealed record MergeIntoRequest(string Model, IReadOnlyList<LoraStrength> Loras, string Output)
{
    /// <summary>fp16, bf16 or fp32 for the floating-point tensors; null keeps each tensor's stored type.</summary>
    public SafeDType? DType { get; init; }
    public bool Force { get; init; }
}

/// <summary>What was merged: per LoRA the modules that mapped and those that did not, and how many tensors changed.</summary>
public sealed record MergeIntoResult(string Output, int Tensors, int Changed, IReadOnlyList<(string Name, int Matched, IReadOnlyList<string> Unmatched)> Loras);

/// <summary>
/// Bakes LoRAs (any adapter type) into a single-file checkpoint, streaming: the output has the
/// input's keys, order, layout (fused OpenCLIP in_proj included) and dtypes, and is written one
/// tensor at a time — an unchanged tensor is copied, a changed one is read in float32, gets every
/// update in order (W + Σ s·ΔW, as the LoRA patcher computes it) and is rounded to its type. No
/// model is loaded: peak memory is about one tensor, plus the page cache of the mapped input.
/// Metadata: the input's, plus `loracraft.merged_loras` (name, A1111 hash, strengths).
/// </summary>
public static class LoraMergeInto
{
    public static MergeIntoResult Run(MergeIntoRequest request, FileHashes? hashes = null)
    {
        if (request.Loras.Count == 0) throw new UserErrorException("merge-into needs at least one LoRA");
        if (!File.Exists(request.Model)) throw new FileNotFoundException($"model not found: {request.Model}", request.Model);
        ToolFiles.CheckOutput(request.Output, request.Force, [request.Model, .. request.Loras.Select(l => l.Path)]);
        using var file = SafetensorsFile.Open(request.Model);
        var structure = CheckpointStructure.Read(file.Header, request.Model);
        var targets = new LoraTargets(structure);
        var loras = new List<LoraFile>();
        try
        {
            foreach (var l in request.Loras) loras.Add(LoraFile.Load(l.Path));
            // every stored tensor that changes, with its updates in LoRA order
            var updates = new Dictionary<string, List<(WeightRecipe Recipe, AdapterModule Module, bool Bias, double Strength)>>(StringComparer.Ordinal);
            var report = new List<(string, int, IReadOnlyList<string>)>();
            for (int i = 0; i < loras.Count; i++)
            {
                var plan = LoraPlan.Create(loras[i], targets);
                report.Add((loras[i].Name, plan.Matched.Count, plan.Unmatched));
                foreach (var (module, target) in plan.Matched)
                {
                    double s = target.Component == LoraComponent.UNet ? request.Loras[i].UNet : request.Loras[i].TextEncoder;
                    if (s == 0) continue;
                    int component = target.Component switch { LoraComponent.UNet => 0, LoraComponent.TextEncoder1 => 1, _ => 2 };
                    Add(structure.RecipeOf(component, target.Name), module, false, s);
                    if (module.BiasDelta is not null && target.Bias is not null)
                        Add(structure.RecipeOf(component, target.Name[..^".weight".Length] + ".bias"), module, true, s);
                }
            }
            void Add(WeightRecipe? recipe, AdapterModule module, bool bias, double strength)
            {
                if (recipe is null) return;
                if (!updates.TryGetValue(recipe.SourceKey, out var list)) updates[recipe.SourceKey] = list = new();
                list.Add((recipe, module, bias, strength));
            }

            var tensors = file.Tensors.Select(t =>
            {
                var type = request.DType is { } d && ToolFiles.IsFloat(t.DType) ? d : SafeDTypes.ToTorch(t.DType) is null ? SafeDType.F32 : t.DType;
                return new LazyTensor(t.Name, type, t.Shape, () => updates.TryGetValue(t.Name, out var list) ? Merged(file, t.Name, list, type) : Copy(file, t.Name, type));
            });
            var metadata = file.Metadata.ToDictionary(p => p.Key, p => p.Value);
            metadata["loracraft.merged_loras"] = JsonSerializer.Serialize(request.Loras.Select((l, i) => new Dictionary<string, object>
            {
                ["name"] = loras[i].Name, ["hash"] = (hashes ?? FileHashes.Default).LoraHash(l.Path), ["unet"] = l.UNet, ["te"] = l.TextEncoder,
            }));
            SafetensorsWriter.WriteLazy(request.Output, tensors, metadata);
            return new MergeIntoResult(request.Output, file.Tensors.Count, updates.Count, report);
        }
        finally
        {
            foreach (var l in loras) l.Dispose();
        }
    }

    static Tensor Copy(SafetensorsFile file, string name, SafeDType type) =>
        file.Load(name, SafeDTypes.ToTorch(type));

    /// <summary>The stored tensor in float32 with each update applied to the part of it its layer is (a fused in_proj's third).</summary>
    static Tensor Merged(SafetensorsFile file, string name, List<(WeightRecipe Recipe, AdapterModule Module, bool Bias, double Strength)> updates, SafeDType type)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var stored = file.Load(name, ScalarType.Float32).contiguous();
        foreach (var group in updates.GroupBy(u => u.Recipe.Transform))
        {
            // our layer's view of the stored tensor, worked on as a contiguous copy and written back
            var (view, back) = View(stored, group.Key);
            foreach (var u in group)
            {
                if (u.Bias) u.Module.AddBiasDelta(view, u.Strength);
                else u.Module.AddDelta(view, u.Strength);
            }
            back(view);
        }
        return stored.to(SafeDTypes.ToTorch(type)!.Value).MoveToOuterDisposeScope();
    }

    static (Tensor View, Action<Tensor> Back) View(Tensor stored, WeightTransform transform)
    {
        switch (transform)
        {
            case WeightTransform.None: return (stored, _ => { });
            case WeightTransform.Transpose: return (stored.t().contiguous(), v => stored.copy_(v.t()));
            case WeightTransform.ThirdQ or WeightTransform.ThirdK or WeightTransform.ThirdV:
                long third = stored.shape[0] / 3, start = third * (transform - WeightTransform.ThirdQ);
                var slice = stored.narrow(0, start, third);
                return (slice.contiguous(), v => slice.copy_(v));
            default: throw new NotSupportedException($"LoRAs do not patch weights stored with {transform}");
        }
    }
}
