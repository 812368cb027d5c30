using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// LoRA and LoCon: ΔW = (alpha / rank) · up @ down (convolutions flattened, multiplied,
/// reshaped), or with a CP-decomposed convolution (`lora_mid`, a [rank, rank, kh, kw] core between
/// a 1x1 down and up) ΔW[o, i, k, l] = Σ up[o, n] · mid[n, m, k, l] · down[m, i] (A1111's
/// rebuild_cp_decomposition). kohya/A1111 (`.lora_down/.lora_up`), diffusers (`…lora.down`,
/// `…lora_linear_layer.down`, `…_lora.down`) and peft (`lora_A/lora_B`) spellings. DyLoRA's rank
/// cut uses the first r ranks, scale unchanged (A1111's rebuild_conventional).
/// </summary>
public sealed class LoraAdapter : AdapterModule
{
    public const string DownPart = "lora_down", UpPart = "lora_up", MidPart = "lora_mid";

    public LoraAdapter(string key, IReadOnlyDictionary<string, long[]> shapes, float? alpha, Tensor? doraScale, Tensor down, Tensor up, Tensor? mid)
        : base(key, shapes, alpha, doraScale)
    {
        Down = down;
        Up = up;
        Mid = mid;
    }

    public Tensor Down { get; }
    public Tensor Up { get; }
    public Tensor? Mid { get; }
    long R => Down.shape[0];
    public double Scale => (Alpha ?? R) / R;
    public override bool IsConv => Mid is not null || Down.dim() == 4 && (Down.shape[2] > 1 || Down.shape[3] > 1);
    public override LoraAlgorithm Algorithm => FileFormat.Algorithm(Shapes);
    public override AdapterFormat Format => FileFormat;

    /// <summary>How many values the rebuilt update has (the patched layer must have as many).</summary>
    public long OutputElements => Up.shape[0] * (Down.numel() / R) * (Mid is null ? 1 : Mid.shape[2] * Mid.shape[3]);

    public override bool Fits(long[] weightShape, long[]? biasShape) =>
        weightShape.Length is 2 or 4 && Up.shape[0] == weightShape[0] && OutputElements == Numel(weightShape);

    (Tensor Up, Tensor Down, Tensor? Mid) Factors(int? dynRank)
    {
        var up = Up.reshape(Up.shape[0], -1).to(ScalarType.Float32);
        var down = Down.reshape(R, -1).to(ScalarType.Float32);
        var mid = Mid?.to(ScalarType.Float32);
        if (dynRank is int r && r > 0 && r < R)
        {
            up = up[.., ..r];
            down = down[..r, ..];
            mid = mid?[..r, ..r];
        }
        return (up, down, mid);
    }

    protected override Tensor Delta(Tensor weight, int? dynRank)
    {
        var (up, down, mid) = Factors(dynRank);
        var delta = mid is null ? up.matmul(down) : torch.einsum("nmkl,on,mi->oikl", mid, up, down);
        return delta.reshape(weight.shape).MulInPlace(Scale);
    }

    /// <summary>One fused multiply-add over the flattened layer, without materialising the update.</summary>
    protected override void AddScaledDelta(Tensor weight, double strength, int? dynRank)
    {
        if (OutputElements != weight.numel() || Up.shape[0] != weight.shape[0])
            throw new LoraFormatException(Key, $"factors give {OutputElements} values, the layer has shape [{string.Join("x", weight.shape)}]");
        var (up, down, mid) = Factors(dynRank);
        if (mid is null)
        {
            weight.view(up.shape[0], down.shape[1]).addmm_(up, down, beta: 1, alpha: (float)(strength * Scale));
            return;
        }
        var delta = torch.einsum("nmkl,on,mi->oikl", mid, up, down);
        weight.AddInPlace(delta, strength * Scale);
    }

    public override LowRankMerge.Factor? LowRank(long[] weightShape, double strength, int? dynRank)
    {
        if (DoraScale is not null || Mid is not null || OutputElements != weightShape.Aggregate(1L, (a, b) => a * b) || Up.shape[0] != weightShape[0]) return null;
        // as stored (the merge reads float16 / bfloat16 / float32 itself); other dtypes in float32
        static Tensor Readable(Tensor t) => t.dtype is ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 ? t : t.to(ScalarType.Float32);
        var up = Readable(Up.reshape(Up.shape[0], -1));
        var down = Readable(Down.reshape(R, -1));
        if (dynRank is int r && r > 0 && r < R)
        {
            up = up[.., ..r];
            down = down[..r, ..];
        }
        return new LowRankMerge.Factor(up.contiguous(), down.contiguous(), (float)(strength * Scale));
    }

    public override BypassBranch CreateBypass(AdaptableLayer layer, Func<Tensor> original, int? dynRank) =>
        IsDora ? base.CreateBypass(layer, original, dynRank) : new LowRankBranch(this, dynRank);

    protected override IEnumerable<Tensor?> OwnedTensors => [Down, Up, Mid];

    /// <summary>up(down(x)) beside the layer: rank-sized products instead of a layer-sized one.</summary>
    sealed class LowRankBranch(LoraAdapter lora, int? dynRank) : BypassBranch(lora, dynRank)
    {
        protected override void AddTo(AdaptableLayer layer, Tensor input, Tensor output)
        {
            var w = layer.WeightSlot.Shape;
            Tensor y;
            if (layer is Conv2d conv)
            {
                var down = Cached("down", () => Factors().Down.reshape(lora.Mid is null ? [-1, w[1], w[2], w[3]] : [-1, w[1], 1, 1]));
                var up = Cached("up", () => { var u = Factors().Up; return u.reshape(u.shape[0], u.shape[1], 1, 1); });
                Tensor h;
                if (lora.Mid is null) h = F.conv2d(input, down, strides: [conv.Stride, conv.Stride], padding: [conv.Padding, conv.Padding]);
                else
                {
                    var mid = Cached("mid", () => Factors().Mid!);
                    h = F.conv2d(F.conv2d(input, down), mid, strides: [conv.Stride, conv.Stride], padding: [conv.Padding, conv.Padding]);
                }
                y = F.conv2d(h, up);
            }
            else
            {
                var down = Cached("down", () => Factors().Down);
                var up = Cached("up", () => Factors().Up);
                y = F.linear(F.linear(input, down), up);
            }
            output.AddInPlace(y, Strength * lora.Scale);
        }

        (Tensor Up, Tensor Down, Tensor? Mid) Factors() => lora.Factors(DynRank);
    }

    public static AdapterFormat FileFormat { get; } = new LoraFormat();

    sealed class LoraFormat : AdapterFormat
    {
        public override IReadOnlyList<(string Suffix, string Part)> Suffixes { get; } =
        [
            (".lora_down.weight", DownPart), (".lora_up.weight", UpPart), (".lora_mid.weight", MidPart),
            (".lora_A.weight", DownPart), (".lora_B.weight", UpPart),
            (".lora.down.weight", DownPart), (".lora.up.weight", UpPart),
            (".lora_linear_layer.down.weight", DownPart), (".lora_linear_layer.up.weight", UpPart),
            ("_lora.down.weight", DownPart), ("_lora.up.weight", UpPart),
        ];

        public override IReadOnlyList<string>? Claim(IReadOnlyDictionary<string, long[]> parts) =>
            !Has(parts, DownPart, UpPart) ? null
            : parts.TryGetValue(MidPart, out var mid) && mid.Length == 4 ? [DownPart, UpPart, MidPart] : [DownPart, UpPart];

        public override LoraAlgorithm Algorithm(IReadOnlyDictionary<string, long[]> parts)
        {
            var down = parts[DownPart];
            bool conv = parts.ContainsKey(MidPart) || down.Length == 4 && (down[2] > 1 || down[3] > 1);
            return conv ? LoraAlgorithm.LoCon : LoraAlgorithm.Lora;
        }

        public override long? Rank(IReadOnlyDictionary<string, long[]> parts) => parts[DownPart] is { Length: > 0 } d ? d[0] : null;
        public override long? InputWidth(IReadOnlyDictionary<string, long[]> parts) => parts[DownPart] is { Length: >= 2 } d ? d[1] : null;

        public override AdapterModule Load(string key, IReadOnlyDictionary<string, long[]> shapes, Func<string, Tensor> read, float? alpha, Tensor? doraScale) =>
            new LoraAdapter(key, shapes, alpha, doraScale, read(DownPart), read(UpPart), shapes.ContainsKey(MidPart) ? read(MidPart) : null);
    }
}
