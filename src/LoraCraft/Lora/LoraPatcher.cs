using LoraCraft.Lora.Adapters;
using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora;

/// <summary>
/// One adapter file at its strengths: A1111's te/unet multipliers, DyLoRA rank cut, per-block
/// weights, and whether it runs merged into the weights or beside them (bypass).
/// </summary>
public sealed record LoraApplication(LoraPlan Plan, double UNet, double TextEncoder, int? DynRank = null)
{
    /// <summary>Per-block weights multiplying the strength of each layer (null: 1 everywhere).</summary>
    public LoraBlockWeights? Blocks { get; init; }
    /// <summary>Run beside the layers instead of merging (norms, which have no bypass slot, are merged anyway).</summary>
    public bool Bypass { get; init; }

    /// <summary>The multiplier of <paramref name="target"/>: its component's strength times its block's weight.</summary>
    public double StrengthFor(LoraTarget target) =>
        (target.Component == LoraComponent.UNet ? UNet : TextEncoder) * (Blocks?.WeightFor(target) ?? 1);
}

/// <summary>
/// Applies the active adapters to a model. Merged ones: W = W0 + Σ multiplier · update, computed
/// in float32 from the original W0 (re-read from the still-mapped checkpoint, or a kept copy for
/// weights that came from no file) and stored in the compute dtype; changing the set or a
/// strength recomputes only the weights whose contributions changed, and an empty set restores W0
/// bit for bit. Bypassed ones: a branch on the layer's adapter slot, whose strength changes in
/// place (per-step schedules) and which leaves the weights untouched. Once applied, merged
/// adapters cost nothing during sampling.
/// </summary>
public sealed class LoraPatcher : IDisposable
{
    /// <summary>What a module adds to one weight: to the weight itself or to the layer's bias.</summary>
    readonly record struct Contribution(AdapterModule Module, bool ToBias, double Multiplier, int? Dyn);

    /// <summary>Copies of originals, only for weights that cannot be re-read from their checkpoint.</summary>
    readonly Dictionary<Weight, Tensor> _originals = new(ReferenceEqualityComparer.Instance);
    readonly Dictionary<Weight, List<Contribution>> _signatures = new(ReferenceEqualityComparer.Instance);
    readonly Dictionary<AdaptableLayer, List<BypassBranch>> _branches = new(ReferenceEqualityComparer.Instance);
    /// <summary>Where originals are re-read for the fused merge (one buffer, reused: no fresh pages per weight).</summary>
    readonly StoredScratch _scratch = new();

    /// <summary>Makes <paramref name="set"/> the active adapters; returns how many weights were rewritten or branches (re)set.</summary>
    public int Apply(IReadOnlyList<LoraApplication> set)
    {
        using var noGrad = torch.no_grad();
        var contributions = new Dictionary<Weight, List<Contribution>>(ReferenceEqualityComparer.Instance);
        var bypass = new Dictionary<AdaptableLayer, List<(AdapterModule Module, double Multiplier, int? Dyn, LoraTarget Target)>>(ReferenceEqualityComparer.Instance);
        foreach (var app in set)
        {
            foreach (var (module, target) in app.Plan.Matched)
            {
                double m = app.StrengthFor(target);
                bool bypassed = app.Bypass && target.Layer is not null;
                // a bypassed UNet branch stays at strength 0 (a schedule's start, a zero block): moving
                // it later costs nothing, rebuilding it would
                if (m == 0 && !(bypassed && target.Component == LoraComponent.UNet)) continue;
                if (bypassed && target.Layer is { } layer)
                {
                    if (!bypass.TryGetValue(layer, out var branches)) bypass[layer] = branches = new();
                    branches.Add((module, m, app.DynRank, target));
                    continue;
                }
                Add(contributions, target.Weight, new Contribution(module, false, m, app.DynRank));
                if (module.BiasDelta is not null && target.Bias is { } bias) Add(contributions, bias, new Contribution(module, true, m, app.DynRank));
            }
        }
        return Merge(contributions) + SetBranches(bypass);
    }

    static void Add(Dictionary<Weight, List<Contribution>> map, Weight weight, Contribution c)
    {
        if (!map.TryGetValue(weight, out var list)) map[weight] = list = new();
        list.Add(c);
    }

    int Merge(Dictionary<Weight, List<Contribution>> contributions)
    {
        int rewritten = 0;
        // weights no longer touched go back to their originals
        foreach (var weight in _signatures.Keys.Where(w => !contributions.ContainsKey(w)).ToList())
        {
            if (!FusedLowRank(weight, []))
                using (var original = Original(weight)) weight.T.copy_(original);
            _signatures.Remove(weight);
            rewritten++;
        }
        foreach (var (weight, list) in contributions)
        {
            if (_signatures.TryGetValue(weight, out var old) && old.SequenceEqual(list)) continue;
            if (weight.Reload is null && !_originals.ContainsKey(weight) && !_signatures.ContainsKey(weight))
                _originals[weight] = weight.T.clone().DetachFromDisposeScope();
            using var scope = NewDisposeScope();
            if (!FusedLowRank(weight, list))
            {
                using var original = Original(weight);
                // one float32 working copy (contiguous, whatever the stored dtype and layout)
                var merged = torch.empty(weight.Shape, ScalarType.Float32, original.device);
                merged.copy_(original);
                foreach (var c in list)
                {
                    if (c.ToBias) c.Module.AddBiasDelta(merged, c.Multiplier);
                    else c.Module.AddDelta(merged, c.Multiplier, c.Dyn);
                }
                weight.T.copy_(merged);
            }
            _signatures[weight] = list;
            rewritten++;
        }
        return rewritten;
    }

    /// <summary>
    /// bf16 weights whose updates are all plain low-rank products merge in one fused pass (the
    /// same float32 arithmetic, no layer-sized float32 copy), reading the original as the
    /// checkpoint stores it where it can; false: the general path.
    /// </summary>
    bool FusedLowRank(Weight weight, List<Contribution> list)
    {
        if (!LowRankMerge.Fits(weight.T)) return false;
        var factors = new List<LowRankMerge.Factor>();
        foreach (var c in list)
        {
            if (c.ToBias || c.Module.LowRank(weight.Shape, c.Multiplier, c.Dyn) is not { } f) return false;
            factors.Add(f);
        }
        using var original = weight.ReloadStored is { } stored && !_originals.ContainsKey(weight) ? stored(_scratch) : Original(weight);
        if (!LowRankMerge.Reads(original) || original.numel() != weight.T.numel()) return false;
        LowRankMerge.Apply(original, factors, weight.T);
        return true;
    }

    int SetBranches(Dictionary<AdaptableLayer, List<(AdapterModule Module, double Multiplier, int? Dyn, LoraTarget Target)>> wanted)
    {
        int changed = 0;
        foreach (var layer in _branches.Keys.Where(l => !wanted.ContainsKey(l)).ToList())
        {
            Detach(layer);
            changed++;
        }
        foreach (var (layer, list) in wanted)
        {
            if (_branches.TryGetValue(layer, out var current)
                && current.Count == list.Count && current.Zip(list).All(p => ReferenceEquals(p.First.Module, p.Second.Module) && p.First.DynRank == p.Second.Dyn))
            {
                // the same modules: only strengths move (a schedule's step), nothing is rebuilt
                bool moved = false;
                for (int i = 0; i < list.Count; i++)
                {
                    moved |= current[i].Strength != list[i].Multiplier;
                    current[i].Strength = list[i].Multiplier;
                }
                if (moved) changed++;
                continue;
            }
            if (current is not null) Detach(layer);
            var weight = list[0].Target.Weight;
            var branches = list.Select(c =>
            {
                var b = c.Module.CreateBypass(layer, () => Original(weight), c.Dyn);
                b.Strength = c.Multiplier;
                return b;
            }).ToList();
            (layer.Adapters ??= new()).AddRange(branches);
            _branches[layer] = branches;
            changed++;
        }
        return changed;
    }

    void Detach(AdaptableLayer layer)
    {
        foreach (var b in _branches[layer])
        {
            layer.Adapters?.Remove(b);
            b.Dispose();
        }
        if (layer.Adapters is { Count: 0 }) layer.Adapters = null;
        _branches.Remove(layer);
    }

    /// <summary>
    /// The unpatched weight: re-read from the checkpoint (bit-identical to what was loaded, no
    /// memory held between switches — SDXL's attention weights alone are 1.4 GB), or the kept copy,
    /// or — for a weight this patcher never merged — the weight itself. The caller disposes the
    /// result; a kept copy or the live weight is handed out as an alias.
    /// </summary>
    Tensor Original(Weight weight) =>
        _originals.TryGetValue(weight, out var copy) ? copy.alias()
        : weight.Reload is { } reload ? reload()
        : weight.T.alias();

    /// <summary>Restores every original weight, removes every branch and forgets them.</summary>
    public void Dispose()
    {
        Apply([]);
        foreach (var t in _originals.Values) t.Dispose();
        _originals.Clear();
        _scratch.Dispose();
    }
}
