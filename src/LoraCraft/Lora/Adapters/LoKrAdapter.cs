using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// LoKr (LyCORIS `lokr_*`): ΔW = kron(w1, w2) · scale, each factor stored whole (`lokr_w1`,
/// `lokr_w2`) or as a product (`lokr_w1_a @ lokr_w1_b`; w2 also with a CP core `lokr_t2`, rebuilt
/// like LoHa's). A convolution's w2 is [c, d, kh, kw] and w1 is then taken as [a, b, 1, 1]. The
/// scale is alpha / rank where rank is the inner size of the decomposed factor (w2's when both
/// are, as A1111 and ComfyUI pick it), and 1 when neither factor is decomposed or there is no
/// alpha (FIXTURES.md).
/// </summary>
public sealed class LoKrAdapter : AdapterModule
{
    readonly Dictionary<string, Tensor> _t;

    LoKrAdapter(string key, IReadOnlyDictionary<string, long[]> shapes, float? alpha, Tensor? doraScale, Dictionary<string, Tensor> tensors)
        : base(key, shapes, alpha, doraScale) => _t = tensors;

    public override LoraAlgorithm Algorithm => LoraAlgorithm.LoKr;
    public override AdapterFormat Format => FileFormat;
    double Scale => Alpha is { } a && FileFormat.Rank(Shapes) is { } r ? a / r : 1.0;

    /// <summary>[rows, cols] of w1 and w2 as the shapes show them (w2 keeps its kernel).</summary>
    (long[] W1, long[] W2) FactorShapes()
    {
        var s = Shapes;
        long[] w1 = s.TryGetValue("lokr_w1", out var a) ? a : [s["lokr_w1_a"][0], s["lokr_w1_b"][1]];
        long[] w2 = s.TryGetValue("lokr_w2", out var b) ? b
            : s.TryGetValue("lokr_t2", out var t) ? [s["lokr_w2_a"][1], s["lokr_w2_b"][1], t[2], t[3]]
            : [s["lokr_w2_a"][0], .. s["lokr_w2_b"][1..]];
        return (w1, w2);
    }

    public override bool Fits(long[] weightShape, long[]? biasShape)
    {
        var (w1, w2) = FactorShapes();
        long outDim = w1[0] * w2[0];
        return weightShape.Length is 2 or 4 && weightShape[0] == outDim && Numel(w1) * Numel(w2) == Numel(weightShape);
    }

    protected override Tensor Delta(Tensor weight, int? dynRank)
    {
        Tensor T(string name) => _t[name].to(ScalarType.Float32);
        var w1 = _t.ContainsKey("lokr_w1") ? T("lokr_w1") : T("lokr_w1_a").matmul(T("lokr_w1_b"));
        var w2 = _t.ContainsKey("lokr_w2") ? T("lokr_w2")
            : _t.ContainsKey("lokr_t2") ? torch.einsum("ijkl,jr,ip->prkl", T("lokr_t2"), T("lokr_w2_b"), T("lokr_w2_a"))
            : T("lokr_w2_a").matmul(T("lokr_w2_b").reshape(_t["lokr_w2_b"].shape[0], -1));
        if (w2.dim() == 4) w1 = w1.reshape(w1.shape[0], w1.shape[1], 1, 1);
        return torch.kron(w1, w2.contiguous()).reshape(weight.shape).MulInPlace(Scale);
    }

    protected override IEnumerable<Tensor?> OwnedTensors => _t.Values;

    public static AdapterFormat FileFormat { get; } = new LoKrFormat();

    sealed class LoKrFormat : AdapterFormat
    {
        static readonly string[] All = ["lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"];

        public override IReadOnlyList<(string Suffix, string Part)> Suffixes { get; } = All.Select(p => ("." + p, p)).ToList();

        public override IReadOnlyList<string>? Claim(IReadOnlyDictionary<string, long[]> parts)
        {
            bool one = parts.ContainsKey("lokr_w1") || Has(parts, "lokr_w1_a", "lokr_w1_b");
            bool two = parts.ContainsKey("lokr_w2") || Has(parts, "lokr_w2_a", "lokr_w2_b");
            if (!one || !two) return null;
            var used = new List<string>();
            used.AddRange(parts.ContainsKey("lokr_w1") ? ["lokr_w1"] : ["lokr_w1_a", "lokr_w1_b"]);
            if (parts.ContainsKey("lokr_w2")) used.Add("lokr_w2");
            else
            {
                used.AddRange(["lokr_w2_a", "lokr_w2_b"]);
                if (parts.TryGetValue("lokr_t2", out var t) && t.Length == 4) used.Add("lokr_t2");
            }
            return used;
        }

        public override LoraAlgorithm Algorithm(IReadOnlyDictionary<string, long[]> parts) => LoraAlgorithm.LoKr;

        /// <summary>The decomposed factor's inner size, w2's first; null when neither is decomposed.</summary>
        public override long? Rank(IReadOnlyDictionary<string, long[]> parts) =>
            parts.TryGetValue("lokr_w2_b", out var b2) && !parts.ContainsKey("lokr_w2") ? b2[0]
            : parts.TryGetValue("lokr_w1_b", out var b1) && !parts.ContainsKey("lokr_w1") ? b1[0]
            : null;

        public override long? InputWidth(IReadOnlyDictionary<string, long[]> parts)
        {
            long? Cols(string whole, string b) => parts.TryGetValue(whole, out var w) ? w[1] : parts.TryGetValue(b, out var f) ? f[1] : null;
            var c1 = Cols("lokr_w1", "lokr_w1_b");
            var c2 = parts.ContainsKey("lokr_t2") ? parts["lokr_w2_b"][1] : Cols("lokr_w2", "lokr_w2_b");
            return c1 * c2;
        }

        public override AdapterModule Load(string key, IReadOnlyDictionary<string, long[]> shapes, Func<string, Tensor> read, float? alpha, Tensor? doraScale) =>
            new LoKrAdapter(key, shapes, alpha, doraScale,
                All.Where(shapes.ContainsKey).ToDictionary(p => p, read, StringComparer.Ordinal));
    }
}
