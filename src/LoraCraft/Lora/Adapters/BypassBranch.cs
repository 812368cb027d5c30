using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// An adapter module running beside its layer (bypass mode, ComfyUI's bypass, sd.cpp's
/// at_runtime): the layer's weights stay untouched and the branch adds strength · (its update
/// applied to the input) to the layer's output. <see cref="Strength"/> can change between model
/// calls at no cost, which is what per-step schedules need. Tensors are converted to the compute
/// dtype once and kept.
/// </summary>
public abstract class BypassBranch : ILayerAdapter, IDisposable
{
    readonly Dictionary<string, Tensor> _cache = new(StringComparer.Ordinal);
    ScalarType _dtype;
    Device? _device;

    protected BypassBranch(AdapterModule module, int? dynRank)
    {
        Module = module;
        DynRank = dynRank;
    }

    public AdapterModule Module { get; }
    public int? DynRank { get; }
    /// <summary>The multiplier (user strength × block weight × schedule) at this model call.</summary>
    public double Strength { get; set; }

    public Tensor Apply(AdaptableLayer layer, Tensor input, Tensor output)
    {
        if (Strength == 0) return output;
        using var scope = NewDisposeScope();
        if (_device is null || _dtype != input.dtype || _device.type != input.device.type || _device.index != input.device.index)
        {
            ClearCache();
            (_dtype, _device) = (input.dtype, input.device);
        }
        AddTo(layer, input, output);
        if (Module.BiasDelta is { } bias)
        {
            var b = Cached("bias", () => bias);
            output.AddInPlace(layer is Conv2d ? b.view(1, -1, 1, 1) : b, Strength);
        }
        return output;
    }

    /// <summary>output += (the branch applied to <paramref name="input"/>), in place.</summary>
    protected abstract void AddTo(AdaptableLayer layer, Tensor input, Tensor output);

    /// <summary><paramref name="make"/>'s result in the compute dtype and device, made once.</summary>
    protected Tensor Cached(string name, Func<Tensor> make)
    {
        if (_cache.TryGetValue(name, out var t)) return t;
        using (NewDisposeScope())
        {
            var source = make();
            var converted = source.to(_dtype, _device!);
            // never hand out (and later dispose) the module's own tensor
            t = (ReferenceEquals(converted, source) ? converted.alias() : converted).DetachFromDisposeScope();
        }
        _cache[name] = t;
        return t;
    }

    protected void ClearCache()
    {
        foreach (var t in _cache.Values) t.Dispose();
        _cache.Clear();
    }

    /// <summary>The layer's operation with another weight (no bias): linear, or convolution with the layer's stride and padding.</summary>
    protected static Tensor Run(AdaptableLayer layer, Tensor input, Tensor weight) => layer is Conv2d c
        ? F.conv2d(input, weight, strides: [c.Stride, c.Stride], padding: [c.Padding, c.Padding])
        : F.linear(input, weight);

    public void Dispose()
    {
        ClearCache();
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// The general bypass branch: the module's whole update (DoRA included) computed once from the
/// original weight and applied as a second weight — one extra layer-sized product per call, as
/// ComfyUI does for LoHa. Types whose update is not linear in the strength (BOFT) are rebuilt
/// when the strength changes.
/// </summary>
public sealed class DeltaBranch(AdapterModule module, Func<Tensor> original, int? dynRank) : BypassBranch(module, dynRank)
{
    double _builtAt = double.NaN;

    protected override void AddTo(AdaptableLayer layer, Tensor input, Tensor output)
    {
        bool linear = Module.LinearInStrength;
        if (!linear && _builtAt != Strength) ClearCache();
        _builtAt = Strength;
        var delta = Cached("delta", () =>
        {
            using var w0 = original();
            var f32 = w0.to(ScalarType.Float32).contiguous();
            return Module.MergedDelta(f32, linear ? 1 : Strength, DynRank);
        });
        output.AddInPlace(Run(layer, input, delta), linear ? Strength : 1);
    }
}
