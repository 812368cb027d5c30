using LoraCraft.Models;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// GroupNorm / LayerNorm adaptation (LyCORIS `w_norm`, `b_norm`): differences added to the
/// norm's weight and bias, no alpha scale (A1111's network_norm, ComfyUI's "diff" on norms).
/// Norms have no bypass slot: they are always merged (a few thousand values, instant).
/// </summary>
public sealed class NormAdapter : AdapterModule
{
    NormAdapter(string key, IReadOnlyDictionary<string, long[]> shapes, Tensor weight, Tensor? bias) : base(key, shapes, null, null)
    {
        WeightDiff = weight;
        BiasDiff = bias;
    }

    public Tensor WeightDiff { get; }
    public Tensor? BiasDiff { get; }
    public override Tensor? BiasDelta => BiasDiff;
    public override LoraAlgorithm Algorithm => LoraAlgorithm.Norm;
    public override AdapterFormat Format => FileFormat;

    public override bool Fits(long[] weightShape, long[]? biasShape) =>
        weightShape.Length == 1 && WeightDiff.numel() == weightShape[0]
        && (BiasDiff is null || biasShape is not null && BiasDiff.numel() == Numel(biasShape));

    protected override Tensor Delta(Tensor weight, int? dynRank) => OwnFloat32(WeightDiff, weight).reshape(weight.shape);

    public override BypassBranch CreateBypass(AdaptableLayer layer, Func<Tensor> original, int? dynRank) =>
        throw new InvalidOperationException("norm adapters are merged, never bypassed");

    protected override IEnumerable<Tensor?> OwnedTensors => [WeightDiff, BiasDiff];

    public static AdapterFormat FileFormat { get; } = new NormFormat();

    sealed class NormFormat : AdapterFormat
    {
        public override IReadOnlyList<(string Suffix, string Part)> Suffixes { get; } = [(".w_norm", "w_norm"), (".b_norm", "b_norm")];

        public override IReadOnlyList<string>? Claim(IReadOnlyDictionary<string, long[]> parts) =>
            parts.ContainsKey("w_norm") ? new[] { "w_norm", "b_norm" }.Where(parts.ContainsKey).ToList() : null;

        public override LoraAlgorithm Algorithm(IReadOnlyDictionary<string, long[]> parts) => LoraAlgorithm.Norm;

        public override AdapterModule Load(string key, IReadOnlyDictionary<string, long[]> shapes, Func<string, Tensor> read, float? alpha, Tensor? doraScale)
        {
            doraScale?.Dispose();
            return new NormAdapter(key, shapes, read("w_norm"), shapes.ContainsKey("b_norm") ? read("b_norm") : null);
        }
    }
}
