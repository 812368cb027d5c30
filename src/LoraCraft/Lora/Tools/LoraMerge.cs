using System.Globalization;
using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora.Adapters;
using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Tools;

/// <summary>A LoRA and the weight it gets in a merge.</summary>
public sealed record WeightedLora(string Path, double Weight);

/// <summary>`lora merge`: several LoRAs into one, by concatenating factors (exact) or by SVD to a rank.</summary>
public sealed record MergeRequest(IReadOnlyList<WeightedLora> Loras, string Output)
{
    /// <summary>Null: concatenate (ranks add, exact); else re-factor every summed update to this rank.</summary>
    public int? SvdRank { get; init; }
    public SafeDType DType { get; init; } = SafeDType.F16;
    public bool Force { get; init; }
}

public sealed record MergeResult(string Output, int Modules, long MaxRank);

/// <summary>
/// Merges LoRAs module by module (same module key, as they are written; convert files to one
/// naming first). Concatenation: up = [w₁·s₁·up₁ | w₂·s₂·up₂ …], down = [down₁; down₂ …], alpha =
/// the new rank, so Σ wᵢ·ΔWᵢ is kept exactly; it joins LoRA/LoCon modules, and sums full diffs
/// and norms. SVD: Σ wᵢ·ΔWᵢ of any type whose update does not depend on the weight (LoRA,
/// LoCon, LoHa, LoKr, full) re-factored to the rank (kohya's svd_merge_lora), norms summed.
/// </summary>
public static class LoraMerge
{
    public static MergeResult Run(MergeRequest r)
    {
        if (r.Loras.Count < 2) throw new UserErrorException("merge needs two LoRAs or more");
        if (r.SvdRank is < 1) throw new UserErrorException("the SVD rank must be 1 or more");
        ToolFiles.CheckOutput(r.Output, r.Force, r.Loras.Select(l => l.Path).ToArray());
        var files = new List<LoraFile>();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        try
        {
            foreach (var l in r.Loras) files.Add(LoraFile.Load(l.Path));
            var families = files.Select(LoraFamilyGuess.Guess).OfType<ModelFamily>().Distinct().ToList();
            if (families.Count > 1)
                throw new UserErrorException($"the LoRAs are made for different families ({string.Join(", ", families.Select(f => f.Id()))}): they cannot be merged");
            var byKey = files.SelectMany((f, i) => f.Modules.Select(m => (Module: m, Weight: r.Loras[i].Weight, File: f.Name)))
                .GroupBy(x => x.Module.Key, StringComparer.Ordinal).ToList();
            var type = SafeDTypes.ToTorch(r.DType)!.Value;
            using var noGrad = torch.no_grad();
            long maxRank = 0;
            foreach (var group in byKey)
            {
                using var scope = NewDisposeScope();
                var parts = group.ToList();
                var made = parts.All(p => p.Module is FullDiffAdapter or NormAdapter) ? Summed(group.Key, parts)
                    : r.SvdRank is { } rank ? Svd(group.Key, parts, rank) : Concatenated(group.Key, parts);
                foreach (var (name, t) in made)
                {
                    if (name.EndsWith(".lora_down.weight", StringComparison.Ordinal)) maxRank = Math.Max(maxRank, t.shape[0]);
                    tensors.Add(new(name, t.to(type).DetachFromDisposeScope()));
                }
            }
            var metadata = new Dictionary<string, string>
            {
                ["ss_network_module"] = "networks.lora",
                ["ss_network_dim"] = r.SvdRank?.ToString(CultureInfo.InvariantCulture) ?? maxRank.ToString(CultureInfo.InvariantCulture),
                ["ss_network_alpha"] = r.SvdRank?.ToString(CultureInfo.InvariantCulture) ?? maxRank.ToString(CultureInfo.InvariantCulture),
                ["modelspec.title"] = Path.GetFileNameWithoutExtension(r.Output),
                ["loracraft.merged_from"] = JsonSerializer.Serialize(r.Loras.Select((l, i) => new Dictionary<string, object> { ["name"] = files[i].Name, ["weight"] = l.Weight })),
            };
            if (families.Count == 1) metadata["ss_base_model_version"] = families[0] switch { ModelFamily.Sd1 => "sd_v1", ModelFamily.Sd2 => "sd_v2", _ => "sdxl_base_v1-0" };
            SafetensorsWriter.Write(r.Output, tensors, metadata);
            return new MergeResult(r.Output, byKey.Count, maxRank);
        }
        finally
        {
            foreach (var t in tensors) t.Value.Dispose();
            foreach (var f in files) f.Dispose();
        }
    }

    static IEnumerable<(string, Tensor)> Concatenated(string key, List<(AdapterModule Module, double Weight, string File)> parts)
    {
        var loras = new List<LoraAdapter>();
        foreach (var (m, _, file) in parts)
            loras.Add(m is LoraAdapter { Mid: null, IsDora: false } l ? l
                : throw new UserErrorException($"{file}: {key} is {m.Algorithm.Id()}{(m.IsDora ? " with DoRA" : m is LoraAdapter ? " with a CP core" : "")}; concatenation joins plain LoRA/LoCon factors (use an SVD rank)"));
        var downShape = loras[0].Down.shape[1..];
        foreach (var (l, i) in loras.Select((l, i) => (l, i)))
            if (!l.Down.shape[1..].SequenceEqual(downShape) || l.Up.shape[0] != loras[0].Up.shape[0])
                throw new UserErrorException($"{parts[i].File}: {key} has another shape than in {parts[0].File}");
        var ups = loras.Select((l, i) => l.Up.to(ScalarType.Float32).Mul(parts[i].Weight * l.Scale)).ToArray();
        var down = torch.cat(loras.Select(l => l.Down.to(ScalarType.Float32)).ToArray(), 0);
        var up = torch.cat(ups, 1);
        yield return (key + ".lora_down.weight", down);
        yield return (key + ".lora_up.weight", up);
        yield return (key + ".alpha", torch.tensor((float)down.shape[0]));
    }

    static IEnumerable<(string, Tensor)> Svd(string key, List<(AdapterModule Module, double Weight, string File)> parts, int rank)
    {
        Tensor? sum = null;
        long[]? shape = null;
        foreach (var (m, w, file) in parts)
        {
            if (m is IA3Adapter or GLoraAdapter or OftAdapter or BoftAdapter or NormAdapter || m.IsDora)
                throw new UserErrorException($"{file}: {key} is {m.Algorithm.Id()}{(m.IsDora ? " with DoRA" : "")}, whose update depends on the model's weight: it cannot be merged without the model");
            shape ??= LayerShape(m) ?? throw new UserErrorException($"{file}: {key}: the layer's shape cannot be told from the {m.Algorithm.Id()} tensors");
            var delta = m.MergedDelta(zeros(shape), w);
            sum = sum is null ? delta : sum.AddInPlace(delta);
        }
        bool conv = shape!.Length == 4;
        using var f = LowRank.Factor(sum!, new RankRule((int)Math.Min(rank, Math.Min(shape[0], sum!.numel() / shape[0]))));
        yield return (key + ".lora_down.weight", conv ? f.Down.reshape(f.Rank, shape[1], shape[2], shape[3]) : f.Down.alias());
        yield return (key + ".lora_up.weight", conv ? f.Up.reshape(shape[0], f.Rank, 1, 1) : f.Up.alias());
        yield return (key + ".alpha", torch.tensor((float)f.Rank));
    }

    static IEnumerable<(string, Tensor)> Summed(string key, List<(AdapterModule Module, double Weight, string File)> parts)
    {
        bool norm = parts[0].Module is NormAdapter;
        if (parts.Any(p => p.Module is NormAdapter != norm)) throw new UserErrorException($"{key}: a norm and a full diff on one layer");
        Tensor? w = null, b = null;
        foreach (var (m, weight, _) in parts)
        {
            var (mw, mb) = m switch
            {
                NormAdapter n => (n.WeightDiff, n.BiasDiff),
                FullDiffAdapter d => (d.Diff, d.DiffBias),
                _ => throw new InvalidOperationException(),
            };
            if (mw is not null) w = w is null ? mw.to(ScalarType.Float32).Mul(weight) : w.AddInPlace(mw.to(ScalarType.Float32), weight);
            if (mb is not null) b = b is null ? mb.to(ScalarType.Float32).Mul(weight) : b.AddInPlace(mb.to(ScalarType.Float32), weight);
        }
        if (w is not null) yield return (key + (norm ? ".w_norm" : ".diff"), w);
        if (b is not null) yield return (key + (norm ? ".b_norm" : ".diff_b"), b);
    }

    /// <summary>The adapted layer's weight shape as the module's tensors tell it.</summary>
    internal static long[]? LayerShape(AdapterModule m)
    {
        switch (m)
        {
            case LoraAdapter l:
                long outDim = l.Up.shape[0];
                if (l.Mid is { } mid) return [outDim, l.Down.shape[1], mid.shape[2], mid.shape[3]];
                return l.Down.dim() == 4 ? [outDim, .. l.Down.shape[1..]] : [outDim, l.Down.shape[1]];
            case FullDiffAdapter { Diff: { } d }: return d.shape;
            default:
                // LoHa, LoKr: without a CP core or 4-D factor the flattened [out, in·k·k] is all the tensors tell
                return m.Shapes.TryGetValue("hada_w1_a", out var a) && m.Shapes.TryGetValue("hada_w1_b", out var b) && !m.Shapes.ContainsKey("hada_t1")
                    ? b.Length == 4 ? [a[0], b[1], b[2], b[3]] : [a[0], b[1]]
                    : m.Shapes.TryGetValue("hada_t1", out var t) ? [m.Shapes["hada_w1_a"][1], m.Shapes["hada_w1_b"][1], t[2], t[3]]
                    : LoKrShape(m);
        }
    }

    static long[]? LoKrShape(AdapterModule m)
    {
        var s = m.Shapes;
        if (!s.ContainsKey("lokr_w1") && !s.ContainsKey("lokr_w1_a")) return null;
        long[] w1 = s.TryGetValue("lokr_w1", out var a) ? a : [s["lokr_w1_a"][0], s["lokr_w1_b"][1]];
        long[] w2 = s.TryGetValue("lokr_w2", out var b) ? b
            : s.TryGetValue("lokr_t2", out var t) ? [s["lokr_w2_a"][1], s["lokr_w2_b"][1], t[2], t[3]]
            : [s["lokr_w2_a"][0], s["lokr_w2_b"][1]];
        return w2.Length == 4 ? [w1[0] * w2[0], w1[1] * w2[1], w2[2], w2[3]] : [w1[0] * w2[0], w1[1] * w2[1]];
    }
}
