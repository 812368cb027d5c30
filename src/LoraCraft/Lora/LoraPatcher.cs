using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora;

/// <summary>One LoRA at its strengths (A1111's te/unet multipliers, DyLoRA rank cut).</summary>
public sealed record LoraApplication(LoraPlan Plan, double UNet, double TextEncoder, int? DynRank = null);

/// <summary>
/// Merges the active LoRAs into the model's weights: W = W0 + sum of multiplier * delta, computed
/// in float32 from the original W0 (re-read from the still-mapped checkpoint, or a kept copy for
/// weights that came from no file) and stored in the compute dtype. Changing the set or a
/// strength recomputes only the weights whose contributions changed; an empty set restores W0
/// bit for bit. Once applied, sampling costs nothing extra.
/// </summary>
public sealed class LoraPatcher : IDisposable
{
    /// <summary>Copies of originals, only for weights that cannot be re-read from their checkpoint.</summary>
    readonly Dictionary<Weight, Tensor> _originals = new(ReferenceEqualityComparer.Instance);
    readonly Dictionary<Weight, List<(LoraModule Module, double Multiplier, int? Dyn)>> _signatures = new(ReferenceEqualityComparer.Instance);

    public int PatchedWeights => _signatures.Count;

    /// <summary>Makes <paramref name="set"/> the active LoRAs; returns how many weights were rewritten.</summary>
    public int Apply(IReadOnlyList<LoraApplication> set)
    {
        using var noGrad = torch.no_grad();
        var contributions = new Dictionary<Weight, List<(LoraModule Module, double Multiplier, int? Dyn, int Index)>>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < set.Count; i++)
        {
            var app = set[i];
            foreach (var (module, target) in app.Plan.Matched)
            {
                double m = target.Component == LoraComponent.UNet ? app.UNet : app.TextEncoder;
                if (m == 0) continue;
                if (!contributions.TryGetValue(target.Weight, out var list)) contributions[target.Weight] = list = new();
                list.Add((module, m, app.DynRank, i));
            }
        }

        int rewritten = 0;
        // weights no longer touched go back to their originals
        foreach (var weight in _signatures.Keys.Where(w => !contributions.ContainsKey(w)).ToList())
        {
            using (var original = Original(weight)) weight.T.copy_(original);
            _signatures.Remove(weight);
            rewritten++;
        }
        foreach (var (weight, list) in contributions)
        {
            var signature = list.Select(c => (c.Module, c.Multiplier, c.Dyn)).ToList();
            if (_signatures.TryGetValue(weight, out var old) && SameContributions(old, signature)) continue;
            if (weight.Reload is null && !_originals.ContainsKey(weight) && !_signatures.ContainsKey(weight))
                _originals[weight] = weight.T.clone().DetachFromDisposeScope();
            using var scope = NewDisposeScope();
            using var original = Original(weight);
            // one float32 working copy (contiguous, whatever the stored dtype and layout)
            var merged = torch.empty(weight.Shape, ScalarType.Float32, original.device);
            merged.copy_(original);
            foreach (var c in list) c.Module.AddTo(merged, c.Multiplier, c.Dyn);
            weight.T.copy_(merged);
            _signatures[weight] = signature;
            rewritten++;
        }
        return rewritten;
    }

    /// <summary>
    /// The unpatched weight: re-read from the checkpoint (bit-identical to what was loaded, no
    /// memory held between switches — SDXL's attention weights alone are 1.4 GB), or the kept copy.
    /// The caller disposes the result; a kept copy is handed out as an alias.
    /// </summary>
    Tensor Original(Weight weight) =>
        _originals.TryGetValue(weight, out var copy) ? copy.alias() : weight.Reload!();

    static bool SameContributions(List<(LoraModule Module, double Multiplier, int? Dyn)> a, List<(LoraModule Module, double Multiplier, int? Dyn)> b) =>
        a.Count == b.Count && a.Zip(b).All(p => ReferenceEquals(p.First.Module, p.Second.Module)
                                                && p.First.Multiplier == p.Second.Multiplier && p.First.Dyn == p.Second.Dyn);

    /// <summary>Restores every original weight and forgets them.</summary>
    public void Dispose()
    {
        Apply([]);
        foreach (var t in _originals.Values) t.Dispose();
        _originals.Clear();
    }
}
