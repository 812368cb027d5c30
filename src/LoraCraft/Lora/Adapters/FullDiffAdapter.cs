using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// A full weight difference (LyCORIS "full", `diff` and the bias difference `diff_b`):
/// ΔW = diff, Δb = diff_b, no alpha scale (A1111's network_full).
/// </summary>
public sealed class FullDiffAdapter : AdapterModule
{
    FullDiffAdapter(string key, IReadOnlyDictionary<string, long[]> shapes, Tensor? doraScale, Tensor? diff, Tensor? diffBias)
        : base(key, shapes, null, doraScale)
    {
        Diff = diff;
        DiffBias = diffBias;
    }

    public Tensor? Diff { get; }
    public Tensor? DiffBias { get; }
    public override Tensor? BiasDelta => DiffBias;
    public override LoraAlgorithm Algorithm => LoraAlgorithm.Full;
    public override AdapterFormat Format => FileFormat;
    public override bool IsConv => Diff is { } d && d.dim() == 4 && (d.shape[2] > 1 || d.shape[3] > 1);

    public override bool Fits(long[] weightShape, long[]? biasShape) =>
        (Diff is null || weightShape.Length >= 1 && Diff.shape[0] == weightShape[0] && Diff.numel() == Numel(weightShape))
        && (DiffBias is null || biasShape is not null && DiffBias.numel() == Numel(biasShape));

    protected override Tensor Delta(Tensor weight, int? dynRank) =>
        Diff is null ? zeros_like(weight) : OwnFloat32(Diff, weight).reshape(weight.shape);

    protected override void AddScaledDelta(Tensor weight, double strength, int? dynRank)
    {
        if (Diff is not null) weight.AddInPlace(Diff.to(ScalarType.Float32, weight.device).reshape(weight.shape), strength);
    }

    protected override IEnumerable<Tensor?> OwnedTensors => [Diff, DiffBias];

    public static AdapterFormat FileFormat { get; } = new FullFormat();

    sealed class FullFormat : AdapterFormat
    {
        public override IReadOnlyList<(string Suffix, string Part)> Suffixes { get; } = [(".diff", "diff"), (".diff_b", "diff_b")];

        public override IReadOnlyList<string>? Claim(IReadOnlyDictionary<string, long[]> parts) =>
            parts.ContainsKey("diff") || parts.ContainsKey("diff_b") ? new[] { "diff", "diff_b" }.Where(parts.ContainsKey).ToList() : null;

        public override LoraAlgorithm Algorithm(IReadOnlyDictionary<string, long[]> parts) => LoraAlgorithm.Full;
        public override long? InputWidth(IReadOnlyDictionary<string, long[]> parts) => parts.TryGetValue("diff", out var d) && d.Length >= 2 ? d[1] : null;

        public override AdapterModule Load(string key, IReadOnlyDictionary<string, long[]> shapes, Func<string, Tensor> read, float? alpha, Tensor? doraScale) =>
            new FullDiffAdapter(key, shapes, doraScale, shapes.ContainsKey("diff") ? read("diff") : null, shapes.ContainsKey("diff_b") ? read("diff_b") : null);
    }
}
