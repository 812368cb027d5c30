using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// One adapted layer of an adapter file: its module key as written in the file, its tensors (in
/// the file's dtype, owned by the module), and how it changes the layer. Every type answers the
/// same questions: does it fit a layer of this shape, what update does it make to a float32
/// weight (merge mode), and what branch runs beside the layer (bypass mode). DoRA (`dora_scale`)
/// sits on top of any type, as A1111 and ComfyUI compute it.
/// </summary>
public abstract class AdapterModule : IDisposable
{
    protected AdapterModule(string key, IReadOnlyDictionary<string, long[]> shapes, float? alpha, Tensor? doraScale)
    {
        Key = key;
        Shapes = shapes;
        Alpha = alpha;
        DoraScale = doraScale;
    }

    public string Key { get; }
    /// <summary>The shapes of the parts it was read from (what header-only listing sees too).</summary>
    public IReadOnlyDictionary<string, long[]> Shapes { get; }
    public float? Alpha { get; }
    /// <summary>DoRA magnitudes: per input column ([1, in, ...], kohya/A1111) or per output row ([out, 1, ...], LyCORIS/peft).</summary>
    public Tensor? DoraScale { get; }
    /// <summary>Added to the layer's bias (`diff_b`, `b_norm`); null for most types.</summary>
    public virtual Tensor? BiasDelta => null;

    public abstract LoraAlgorithm Algorithm { get; }
    public abstract AdapterFormat Format { get; }
    public long? Rank => Format.Rank(Shapes);
    /// <summary>Input width of the adapted layer when the tensors show it (family guessing).</summary>
    public long? InputWidth => Format.InputWidth(Shapes);
    public virtual bool IsConv => false;
    public bool IsDora => DoraScale is not null;

    /// <summary>Whether this module can adapt a weight of <paramref name="weightShape"/> (and bias of <paramref name="biasShape"/>).</summary>
    public abstract bool Fits(long[] weightShape, long[]? biasShape);

    /// <summary>
    /// The update at strength 1 in float32 with the weight's shape, scale (alpha / rank) included,
    /// DoRA not. Reads <paramref name="weight"/> (the weight as merged so far) for the types whose
    /// update depends on it ((IA)³, GLoRA, OFT, BOFT), as A1111 and ComfyUI do when stacking.
    /// </summary>
    protected abstract Tensor Delta(Tensor weight, int? dynRank);
    // Delta's result must be a tensor of its own: DeltaAt scales it in place.

    /// <summary>A stored tensor in float32 on <paramref name="like"/>'s device, never the stored tensor itself (callers scale it in place).</summary>
    protected static Tensor OwnFloat32(Tensor stored, Tensor like)
    {
        bool already = stored.dtype == ScalarType.Float32 && stored.device_type == like.device_type && stored.device_index == like.device_index;
        return already ? stored.clone() : stored.to(ScalarType.Float32, like.device);
    }

    /// <summary>The update at <paramref name="strength"/>; linear in it except where a type says otherwise (BOFT).</summary>
    protected virtual Tensor DeltaAt(Tensor weight, double strength, int? dynRank) => Delta(weight, dynRank).MulInPlace(strength);

    /// <summary>Whether the update scales linearly with the strength (bypass branches then compute it once).</summary>
    public virtual bool LinearInStrength => true;

    /// <summary>
    /// weight += the update at <paramref name="strength"/>, on a contiguous float32 weight. With
    /// DoRA: W' = m · (W + ΔW) / ‖W + ΔW‖, and the weight moves strength · (W' − W) (A1111's
    /// apply_weight_decompose after the scale, before the multiplier).
    /// </summary>
    public void AddDelta(Tensor weight, double strength, int? dynRank = null)
    {
        using var scope = NewDisposeScope();
        if (DoraScale is null)
        {
            AddScaledDelta(weight, strength, dynRank);
            return;
        }
        weight.AddInPlace(DecomposedDelta(weight, dynRank), strength);
    }

    /// <summary>The whole update (DoRA included) at <paramref name="strength"/>, float32, for bypass branches.</summary>
    public Tensor MergedDelta(Tensor weight, double strength, int? dynRank = null)
    {
        using var scope = NewDisposeScope();
        var delta = DoraScale is null ? DeltaAt(weight, strength, dynRank) : DecomposedDelta(weight, dynRank).MulInPlace(strength);
        return delta.MoveToOuterDisposeScope();
    }

    Tensor DecomposedDelta(Tensor weight, int? dynRank)
    {
        var merged = weight.Add(Delta(weight, dynRank));
        return WeightDecomposition.Apply(merged, DoraScale!).sub_(weight);
    }

    /// <summary>
    /// The update at <paramref name="strength"/> as one low-rank product (α · up · down, float32)
    /// when this type has that form for a weight of <paramref name="weightShape"/>, for the fused
    /// bf16 merge (<see cref="LowRankMerge"/>); null otherwise.
    /// </summary>
    public virtual LowRankMerge.Factor? LowRank(long[] weightShape, double strength, int? dynRank) => null;

    /// <summary>The plain (non-DoRA) merge; types with a cheaper fused form override it.</summary>
    protected virtual void AddScaledDelta(Tensor weight, double strength, int? dynRank) =>
        weight.AddInPlace(DeltaAt(weight, strength, dynRank));

    /// <summary>bias += strength · the bias update.</summary>
    public void AddBiasDelta(Tensor bias, double strength)
    {
        if (BiasDelta is not { } b) return;
        using var scope = NewDisposeScope();
        bias.AddInPlace(b.to(ScalarType.Float32, bias.device).reshape(bias.shape), strength);
    }

    /// <summary>
    /// The branch that runs beside <paramref name="layer"/> in bypass mode. The default computes the
    /// full update once from <paramref name="original"/> (float32) and applies it as a second
    /// weight; types with a cheaper low-rank or elementwise form override it.
    /// </summary>
    public virtual BypassBranch CreateBypass(AdaptableLayer layer, Func<Tensor> original, int? dynRank) =>
        new DeltaBranch(this, original, dynRank);

    /// <summary>Every tensor the module owns (disposed with it).</summary>
    protected abstract IEnumerable<Tensor?> OwnedTensors { get; }

    public void Dispose()
    {
        foreach (var t in OwnedTensors) t?.Dispose();
        DoraScale?.Dispose();
        GC.SuppressFinalize(this);
    }

    protected static long Numel(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);
}
