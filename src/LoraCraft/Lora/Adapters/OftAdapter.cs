using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// OFT: the output rows of W, in K blocks of n, are rotated by block-diagonal orthogonal
/// matrices: W'[k·n + m] = Σ R[k, n', m] · W[k·n + n'] (A1111's and kohya's einsum), ΔW = W' − W,
/// and a strength s moves the weight s · ΔW (kohya: R_s = s(R − I) + I).
/// kohya's `oft_blocks` [K, n, n] hold Q before the Cayley transform: Q = B − Bᵀ, its Frobenius
/// norm clamped to alpha · out (kohya/A1111/LyCORIS; no clamp when alpha is 0, as LyCORIS), then
/// R = (I + Q)(I − Q)⁻¹. Old LyCORIS `oft_diag` [K, n, n] store R itself (A1111). LyCORIS'
/// optional `rescale` [out, 1, ...] multiplies W' row-wise. Rank is K (kohya's network_dim).
/// </summary>
public sealed class OftAdapter : AdapterModule
{
    readonly Tensor _blocks;
    readonly Tensor? _rescale;
    readonly bool _cayley;

    OftAdapter(string key, IReadOnlyDictionary<string, long[]> shapes, float? alpha, Tensor? doraScale, Tensor blocks, bool cayley, Tensor? rescale)
        : base(key, shapes, alpha, doraScale) => (_blocks, _cayley, _rescale) = (blocks, cayley, rescale);

    public override LoraAlgorithm Algorithm => LoraAlgorithm.Oft;
    public override AdapterFormat Format => FileFormat;
    long K => _blocks.shape[0];
    long N => _blocks.shape[1];

    public override bool Fits(long[] weightShape, long[]? biasShape) => weightShape.Length is 2 or 4 && weightShape[0] == K * N;

    /// <summary>The rotation blocks R [K, n, n] in float32.</summary>
    internal static Tensor Rotations(Tensor blocks, bool cayley, double? constraint)
    {
        var b = blocks.to(ScalarType.Float32);
        if (!cayley) return b;
        var q = b - b.transpose(-1, -2);
        if (constraint is double c && c > 0)
        {
            double norm = q.norm().item<float>();
            double clamped = Math.Min(norm, c);
            q = q.Mul((clamped + 1e-8) / (norm + 1e-8));
        }
        var eye = torch.eye(q.shape[^1], dtype: ScalarType.Float32, device: q.device).expand_as(q);
        return eye.Add(q).matmul((eye - q).inverse());
    }

    protected override Tensor Delta(Tensor weight, int? dynRank)
    {
        long outDim = weight.shape[0];
        var r = Rotations(_blocks, _cayley, Alpha is { } a ? a * outDim : null);
        var w = weight.reshape(K, N, -1);
        var rotated = torch.einsum("knm,knr->kmr", r, w).reshape(weight.shape);
        if (_rescale is not null) rotated = rotated * _rescale.to(ScalarType.Float32, weight.device).reshape([outDim, .. Enumerable.Repeat(1L, (int)weight.dim() - 1)]);
        return rotated.sub_(weight);
    }

    protected override IEnumerable<Tensor?> OwnedTensors => [_blocks, _rescale];

    public static AdapterFormat FileFormat { get; } = new OftFormat();

    sealed class OftFormat : AdapterFormat
    {
        public override IReadOnlyList<(string Suffix, string Part)> Suffixes { get; } =
            [(".oft_blocks", "oft_blocks"), (".oft_diag", "oft_diag"), (".rescale", "rescale")];

        public override IReadOnlyList<string>? Claim(IReadOnlyDictionary<string, long[]> parts)
        {
            string? blocks = parts.TryGetValue("oft_blocks", out var b) && b.Length == 3 ? "oft_blocks"
                : parts.TryGetValue("oft_diag", out var d) && d.Length == 3 ? "oft_diag" : null;
            if (blocks is null) return null;
            return parts.ContainsKey("rescale") ? [blocks, "rescale"] : [blocks];
        }

        public override LoraAlgorithm Algorithm(IReadOnlyDictionary<string, long[]> parts) => LoraAlgorithm.Oft;
        public override long? Rank(IReadOnlyDictionary<string, long[]> parts) => (parts.GetValueOrDefault("oft_blocks") ?? parts["oft_diag"])[0];

        public override AdapterModule Load(string key, IReadOnlyDictionary<string, long[]> shapes, Func<string, Tensor> read, float? alpha, Tensor? doraScale)
        {
            bool kohya = shapes.ContainsKey("oft_blocks");
            return new OftAdapter(key, shapes, alpha, doraScale, read(kohya ? "oft_blocks" : "oft_diag"), kohya,
                                  shapes.ContainsKey("rescale") ? read("rescale") : null);
        }
    }
}
