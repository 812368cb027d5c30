using LoraCraft.Models;
using static TorchSharp.torch;

namespace LoraCraft.Benchmarks;

/// <summary>
/// Counts the multiply-add work of a network while it runs (2 FLOPs per multiply-add): every
/// linear and convolution layer from its output size and weight shape, plus attention's two
/// products (q·kᵀ and p·v: 4·B·N·M·C) from each attention block's query and key projections.
/// Elementwise work (norms, activations, softmax) is not counted: this is the arithmetic a
/// matrix-multiply peak bounds. Attached as pass-through layer adapters; disposing detaches them.
/// </summary>
sealed class FlopCounter : IDisposable
{
    readonly List<(AdaptableLayer Layer, Probe Probe)> _attached = [];
    long _queryElements;

    public double Flops { get; private set; }

    public FlopCounter(Net net)
    {
        foreach (var (name, module) in net.Modules())
        {
            if (module is not AdaptableLayer layer) continue;
            var role = name.EndsWith("to_q", StringComparison.Ordinal) ? Role.Query : name.EndsWith("to_k", StringComparison.Ordinal) ? Role.Key : Role.None;
            var probe = new Probe(this, role);
            (layer.Adapters ??= []).Add(probe);
            _attached.Add((layer, probe));
        }
    }

    public void Dispose()
    {
        foreach (var (layer, probe) in _attached)
        {
            layer.Adapters?.Remove(probe);
            if (layer.Adapters is { Count: 0 }) layer.Adapters = null;
        }
        _attached.Clear();
    }

    enum Role { None, Query, Key }

    sealed class Probe(FlopCounter counter, Role role) : ILayerAdapter
    {
        public Tensor Apply(AdaptableLayer layer, Tensor input, Tensor output)
        {
            var shape = layer.WeightSlot.Shape; // [out, in] or [out, in, k, k]
            double perOutput = shape.Length == 4 ? shape[1] * shape[2] * shape[3] : shape[1];
            counter.Flops += 2 * perOutput * output.numel();
            if (role == Role.Query) counter._queryElements = output.numel(); // B·N·C
            else if (role == Role.Key && output.dim() == 3) counter.Flops += 4.0 * counter._queryElements * output.shape[1]; // ·M
            return output;
        }
    }
}
