using LoraCraft.Models;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// (IA)³ (LyCORIS `weight` + `on_input`): a learned vector scales the layer's weight per output
/// row, or per input column when `on_input` is set: ΔW = W ⊙ w (A1111's network_ia3, no alpha
/// scale). In bypass mode that is (y − b) ⊙ w on the output, or the layer on x ⊙ w.
/// </summary>
public sealed class IA3Adapter : AdapterModule
{
    IA3Adapter(string key, IReadOnlyDictionary<string, long[]> shapes, Tensor? doraScale, Tensor weight, bool onInput)
        : base(key, shapes, null, doraScale)
    {
        Vector = weight;
        OnInput = onInput;
    }

    public Tensor Vector { get; }
    public bool OnInput { get; }
    public override LoraAlgorithm Algorithm => LoraAlgorithm.IA3;
    public override AdapterFormat Format => FileFormat;

    public override bool Fits(long[] weightShape, long[]? biasShape) =>
        weightShape.Length is 2 or 4 && Vector.numel() == weightShape[OnInput ? 1 : 0];

    /// <summary>The vector shaped to broadcast over a weight of <paramref name="dims"/> dimensions.</summary>
    Tensor Broadcastable(Tensor v, long dims)
    {
        var shape = Enumerable.Repeat(1L, (int)dims).ToArray();
        shape[OnInput ? 1 : 0] = -1;
        return v.reshape(shape);
    }

    protected override Tensor Delta(Tensor weight, int? dynRank) => weight * Broadcastable(Vector.to(ScalarType.Float32, weight.device), weight.dim());

    public override BypassBranch CreateBypass(AdaptableLayer layer, Func<Tensor> original, int? dynRank) =>
        IsDora ? base.CreateBypass(layer, original, dynRank) : new ScaleBranch(this);

    protected override IEnumerable<Tensor?> OwnedTensors => [Vector];

    sealed class ScaleBranch(IA3Adapter ia3) : BypassBranch(ia3, null)
    {
        protected override void AddTo(AdaptableLayer layer, Tensor input, Tensor output)
        {
            bool conv = layer is Conv2d;
            var w = Cached("w", () => conv ? ia3.Vector.view(1, -1, 1, 1) : ia3.Vector.flatten());
            if (ia3.OnInput)
            {
                output.AddInPlace(Run(layer, input * w, layer.WeightSlot.T), Strength);
                return;
            }
            var y = output;
            if (layer.BiasSlot is { } b) y = output - (conv ? b.T.view(1, -1, 1, 1) : b.T);
            output.AddInPlace(y * w, Strength);
        }
    }

    public static AdapterFormat FileFormat { get; } = new IA3Format();

    sealed class IA3Format : AdapterFormat
    {
        public override IReadOnlyList<(string Suffix, string Part)> Suffixes { get; } = [(".weight", "weight"), (".on_input", "on_input")];

        // a bare `.weight` is every checkpoint tensor: (IA)³ needs its `on_input` flag beside it
        public override IReadOnlyList<string>? Claim(IReadOnlyDictionary<string, long[]> parts) =>
            Has(parts, "weight", "on_input") && parts["weight"].Length == 1 ? ["weight", "on_input"] : null;

        public override LoraAlgorithm Algorithm(IReadOnlyDictionary<string, long[]> parts) => LoraAlgorithm.IA3;

        public override AdapterModule Load(string key, IReadOnlyDictionary<string, long[]> shapes, Func<string, Tensor> read, float? alpha, Tensor? doraScale)
        {
            using var flag = read("on_input");
            return new IA3Adapter(key, shapes, doraScale, read("weight"), flag.numel() > 0 && flag.to(ScalarType.Float32).flatten()[0].item<float>() != 0);
        }
    }
}
