using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// BOFT, butterfly OFT (LyCORIS `oft_blocks` [m, K, b, b]): m orthogonal block-diagonal factors
/// (Cayley transform as in OFT, the norm clamped to alpha · out when alpha > 0), factor i acting on
/// the output rows after the butterfly permutation of stride 2^i · b/2 (LyCORIS' make_weight;
/// ComfyUI's on dim 0). A strength s blends each factor with the identity, R_i(s) = s·R_i + (1−s)·I
/// (LyCORIS), so the update is not linear in s. Optional `rescale` multiplies the result row-wise.
/// </summary>
public sealed class BoftAdapter : AdapterModule
{
    readonly Tensor _blocks;
    readonly Tensor? _rescale;

    BoftAdapter(string key, IReadOnlyDictionary<string, long[]> shapes, float? alpha, Tensor? doraScale, Tensor blocks, Tensor? rescale)
        : base(key, shapes, alpha, doraScale) => (_blocks, _rescale) = (blocks, rescale);

    public override LoraAlgorithm Algorithm => LoraAlgorithm.Boft;
    public override AdapterFormat Format => FileFormat;
    public override bool LinearInStrength => false;

    public override bool Fits(long[] weightShape, long[]? biasShape)
    {
        long m = _blocks.shape[0], k = _blocks.shape[1], b = _blocks.shape[2];
        if (weightShape.Length is not (2 or 4) || weightShape[0] != k * b || b % 2 != 0) return false;
        // every butterfly stage splits the rows in pairs of 2^i * b/2
        for (int i = 0; i < m; i++)
            if (weightShape[0] % ((2L << i) * (b / 2)) != 0) return false;
        return true;
    }

    protected override Tensor Delta(Tensor weight, int? dynRank) => DeltaAt(weight, 1, dynRank);

    protected override Tensor DeltaAt(Tensor weight, double strength, int? dynRank)
    {
        long outDim = weight.shape[0];
        long m = _blocks.shape[0], blockSize = _blocks.shape[2], half = blockSize / 2;
        var r = OftAdapter.Rotations(_blocks, cayley: true, Alpha is { } a ? a * outDim : null); // [m, K, b, b]
        var eye = torch.eye(blockSize, dtype: ScalarType.Float32, device: weight.device);
        var x = weight.reshape(outDim, -1);
        long rest = x.shape[1];
        for (int i = 0; i < m; i++)
        {
            var factor = r[i];
            if (strength != 1) factor = factor.Mul(strength).Add(eye.Mul(1 - strength));
            long stride = (1L << i) * half;
            // rows (g, s, j) -> (g, j, s): pairs `stride` apart become neighbours, then blocks of b
            var permuted = x.reshape(-1, 2, stride, rest).transpose(1, 2).reshape(-1, blockSize, rest);
            var turned = torch.einsum("bij,bjr->bir", factor, permuted);
            x = turned.reshape(-1, stride, 2, rest).transpose(1, 2).reshape(outDim, rest);
        }
        if (_rescale is not null) x = x * _rescale.to(ScalarType.Float32, weight.device).reshape(outDim, 1);
        return x.reshape(weight.shape).sub_(weight);
    }

    protected override IEnumerable<Tensor?> OwnedTensors => [_blocks, _rescale];

    public static AdapterFormat FileFormat { get; } = new BoftFormat();

    sealed class BoftFormat : AdapterFormat
    {
        public override IReadOnlyList<(string Suffix, string Part)> Suffixes { get; } = [(".oft_blocks", "oft_blocks"), (".rescale", "rescale")];

        public override IReadOnlyList<string>? Claim(IReadOnlyDictionary<string, long[]> parts) =>
            parts.TryGetValue("oft_blocks", out var b) && b.Length == 4 ? parts.ContainsKey("rescale") ? ["oft_blocks", "rescale"] : ["oft_blocks"] : null;

        public override LoraAlgorithm Algorithm(IReadOnlyDictionary<string, long[]> parts) => LoraAlgorithm.Boft;
        public override long? Rank(IReadOnlyDictionary<string, long[]> parts) => parts["oft_blocks"][1];

        public override AdapterModule Load(string key, IReadOnlyDictionary<string, long[]> shapes, Func<string, Tensor> read, float? alpha, Tensor? doraScale) =>
            new BoftAdapter(key, shapes, alpha, doraScale, read("oft_blocks"), shapes.ContainsKey("rescale") ? read("rescale") : null);
    }
}
