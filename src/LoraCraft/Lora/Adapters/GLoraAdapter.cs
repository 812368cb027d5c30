using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// GLoRA (LyCORIS `a1/a2/b1/b2.weight`): f(x) = Wx + W·A·x + B·x, so ΔW = (W @ a1 @ a2 + b1 @ b2)
/// · alpha / rank (LyCORIS' make_weight; for convolutions a1 and a2 act on the input channels).
/// Current files: a1 [in, r], a2 [r, in], b1 [out, r], b2 [r, in·k·k]. Old LyCORIS files had the
/// names the other way round (ΔW = b2 @ b1 + W @ a2 @ a1); the shapes tell them apart as in
/// ComfyUI. Rank is r; scale 1 without an alpha.
/// </summary>
public sealed class GLoraAdapter : AdapterModule
{
    readonly Tensor _a1, _a2, _b1, _b2;

    GLoraAdapter(string key, IReadOnlyDictionary<string, long[]> shapes, float? alpha, Tensor? doraScale, Tensor a1, Tensor a2, Tensor b1, Tensor b2)
        : base(key, shapes, alpha, doraScale) => (_a1, _a2, _b1, _b2) = (a1, a2, b1, b2);

    public override LoraAlgorithm Algorithm => LoraAlgorithm.GLoRA;
    public override AdapterFormat Format => FileFormat;

    /// <summary>The four factors as (A1: in x r, A2: r x in, B1: out x r, B2: r x rest), whichever layout the file uses.</summary>
    (Tensor A1, Tensor A2, Tensor B1, Tensor B2) Ordered(long outDim)
    {
        Tensor M(Tensor t) => t.to(ScalarType.Float32).reshape(t.shape[0], -1);
        return GLoraFormat.IsOld(Shapes, outDim) ? (M(_a2), M(_a1), M(_b2), M(_b1)) : (M(_a1), M(_a2), M(_b1), M(_b2));
    }

    double Scale(long outDim) => Alpha is { } a ? a / GLoraFormat.OrderedShapes(Shapes, outDim).A2[0] : 1.0;

    public override bool Fits(long[] weightShape, long[]? biasShape)
    {
        if (weightShape.Length is not (2 or 4)) return false;
        var (a1, _, b1, b2) = GLoraFormat.OrderedShapes(Shapes, weightShape[0]);
        return weightShape[0] == b1[0] && weightShape[1] == a1[0] && b1[0] * Numel(b2[1..]) == Numel(weightShape);
    }

    protected override Tensor Delta(Tensor weight, int? dynRank)
    {
        var (a1, a2, b1, b2) = Ordered(weight.shape[0]);
        var wa = weight.dim() > 2
            ? torch.einsum("oikl,ir,rj->ojkl", weight, a1, a2)
            : weight.matmul(a1).matmul(a2);
        return wa.AddInPlace(b1.matmul(b2).reshape(weight.shape)).MulInPlace(Scale(weight.shape[0]));
    }

    protected override IEnumerable<Tensor?> OwnedTensors => [_a1, _a2, _b1, _b2];

    public static AdapterFormat FileFormat { get; } = new GLoraFormat();

    sealed class GLoraFormat : AdapterFormat
    {
        static readonly string[] Parts = ["a1.weight", "a2.weight", "b1.weight", "b2.weight"];

        public override IReadOnlyList<(string Suffix, string Part)> Suffixes { get; } = Parts.Select(p => ("." + p, p)).ToList();

        public override IReadOnlyList<string>? Claim(IReadOnlyDictionary<string, long[]> parts) =>
            Has(parts, Parts) && Parts.All(p => parts[p].Length >= 2) ? Parts : null;

        public override LoraAlgorithm Algorithm(IReadOnlyDictionary<string, long[]> parts) => LoraAlgorithm.GLoRA;

        /// <summary>
        /// Old layout: b2[1] == b1[0] == a1[0] == a2[1] (the rank). On a square layer the current
        /// layout's equalities hold too; then, as ComfyUI decides, it is old when a2's first size is
        /// the layer's output width (without the layer: when that size is the larger, the rank
        /// being the smaller).
        /// </summary>
        public static bool IsOld(IReadOnlyDictionary<string, long[]> s, long? outDim = null)
        {
            long[] a1 = s["a1.weight"], a2 = s["a2.weight"], b1 = s["b1.weight"], b2 = s["b2.weight"];
            bool old = b2[1] == b1[0] && b1[0] == a1[0] && a1[0] == a2[1];
            bool current = b2[0] == b1[1] && b1[1] == a1[1] && a1[1] == a2[0];
            if (!old || !current) return old;
            return outDim is { } o ? a2[0] == o : a2[0] > a2[1];
        }

        public static (long[] A1, long[] A2, long[] B1, long[] B2) OrderedShapes(IReadOnlyDictionary<string, long[]> s, long? outDim = null) => IsOld(s, outDim)
            ? (s["a2.weight"], s["a1.weight"], s["b2.weight"], s["b1.weight"])
            : (s["a1.weight"], s["a2.weight"], s["b1.weight"], s["b2.weight"]);

        public override long? Rank(IReadOnlyDictionary<string, long[]> parts) => OrderedShapes(parts).A2[0];
        public override long? InputWidth(IReadOnlyDictionary<string, long[]> parts) => OrderedShapes(parts).A1[0];

        public override AdapterModule Load(string key, IReadOnlyDictionary<string, long[]> shapes, Func<string, Tensor> read, float? alpha, Tensor? doraScale) =>
            new GLoraAdapter(key, shapes, alpha, doraScale, read("a1.weight"), read("a2.weight"), read("b1.weight"), read("b2.weight"));
    }
}
