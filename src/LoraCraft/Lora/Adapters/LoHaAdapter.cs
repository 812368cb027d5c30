using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// LoHa (LyCORIS `hada_*`): ΔW = (w1a @ w1b) ⊙ (w2a @ w2b) · alpha / rank, rank = w1b's first
/// dimension, scale 1 without an alpha (A1111's calc_scale). With CP cores (`hada_t1`, `hada_t2`,
/// [rank, rank, kh, kw]) each factor is rebuilt as Σ t[i, j, k, l] · w_b[j, r] · w_a[i, p] ->
/// [p, r, k, l] (A1111's make_weight_cp), w_a being [rank, out] and w_b [rank, in].
/// </summary>
public sealed class LoHaAdapter : AdapterModule
{
    LoHaAdapter(string key, IReadOnlyDictionary<string, long[]> shapes, float? alpha, Tensor? doraScale,
                Tensor w1a, Tensor w1b, Tensor w2a, Tensor w2b, Tensor? t1, Tensor? t2) : base(key, shapes, alpha, doraScale)
    {
        (W1a, W1b, W2a, W2b, T1, T2) = (w1a, w1b, w2a, w2b, t1, t2);
    }

    public Tensor W1a { get; }
    public Tensor W1b { get; }
    public Tensor W2a { get; }
    public Tensor W2b { get; }
    public Tensor? T1 { get; }
    public Tensor? T2 { get; }
    bool Cp => T1 is not null && T2 is not null;
    double Scale => Alpha is { } a ? a / W1b.shape[0] : 1.0;

    public override LoraAlgorithm Algorithm => LoraAlgorithm.LoHa;
    public override AdapterFormat Format => FileFormat;
    public override bool IsConv => Cp || W1b.dim() == 4;

    public override bool Fits(long[] weightShape, long[]? biasShape)
    {
        long outDim = Cp ? W1a.shape[1] : W1a.shape[0];
        long rest = Cp ? W1b.shape[1] * T1!.shape[2] * T1.shape[3] : W1b.numel() / W1b.shape[0];
        return weightShape.Length is 2 or 4 && weightShape[0] == outDim && outDim * rest == Numel(weightShape);
    }

    protected override Tensor Delta(Tensor weight, int? dynRank)
    {
        Tensor Factor(Tensor a, Tensor b, Tensor? t) => t is null
            ? a.to(ScalarType.Float32).reshape(a.shape[0], -1).matmul(b.to(ScalarType.Float32).reshape(b.shape[0], -1))
            : torch.einsum("ijkl,jr,ip->prkl", t.to(ScalarType.Float32), b.to(ScalarType.Float32), a.to(ScalarType.Float32));
        var d = Factor(W1a, W1b, Cp ? T1 : null).reshape(weight.shape) * Factor(W2a, W2b, Cp ? T2 : null).reshape(weight.shape);
        return d.MulInPlace(Scale);
    }

    protected override IEnumerable<Tensor?> OwnedTensors => [W1a, W1b, W2a, W2b, T1, T2];

    public static AdapterFormat FileFormat { get; } = new LoHaFormat();

    sealed class LoHaFormat : AdapterFormat
    {
        static readonly string[] Factors = ["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"];

        public override IReadOnlyList<(string Suffix, string Part)> Suffixes { get; } =
            Factors.Concat(["hada_t1", "hada_t2"]).Select(p => ("." + p, p)).ToList();

        public override IReadOnlyList<string>? Claim(IReadOnlyDictionary<string, long[]> parts) =>
            !Has(parts, Factors) ? null : Has(parts, "hada_t1", "hada_t2") ? [.. Factors, "hada_t1", "hada_t2"] : Factors;

        public override LoraAlgorithm Algorithm(IReadOnlyDictionary<string, long[]> parts) => LoraAlgorithm.LoHa;
        public override long? Rank(IReadOnlyDictionary<string, long[]> parts) => parts["hada_w1_b"][0];
        public override long? InputWidth(IReadOnlyDictionary<string, long[]> parts) => parts["hada_w1_b"] is { Length: >= 2 } b ? b[1] : null;

        public override AdapterModule Load(string key, IReadOnlyDictionary<string, long[]> shapes, Func<string, Tensor> read, float? alpha, Tensor? doraScale)
        {
            bool cp = shapes.ContainsKey("hada_t1");
            return new LoHaAdapter(key, shapes, alpha, doraScale, read("hada_w1_a"), read("hada_w1_b"), read("hada_w2_a"), read("hada_w2_b"),
                                   cp ? read("hada_t1") : null, cp ? read("hada_t2") : null);
        }
    }
}
