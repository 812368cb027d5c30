using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Models;

/// <summary>
/// One named parameter slot. Shapes are declared when the network is built; the tensor arrives
/// when weights are loaded (in the compute dtype), so building a full-size model costs nothing
/// and no random initialisation is ever paid for.
/// </summary>
/// <summary>A reusable buffer for re-reading stored weights (one per user, one read at a time).</summary>
public sealed class StoredScratch : IDisposable
{
    Tensor? _buffer;

    /// <summary>A flat contiguous view of <paramref name="count"/> elements of <paramref name="dtype"/>; earlier views become invalid.</summary>
    public Tensor Get(ScalarType dtype, long count)
    {
        if (_buffer is null || _buffer.dtype != dtype || _buffer.numel() < count)
        {
            _buffer?.Dispose();
            _buffer = torch.empty([count], dtype).DetachFromDisposeScope();
        }
        return _buffer.narrow(0, 0, count);
    }

    public void Dispose()
    {
        _buffer?.Dispose();
        _buffer = null;
    }
}

public sealed class Weight
{
    public Weight(long[] shape, bool keepFloat32 = false)
    {
        Shape = shape;
        KeepFloat32 = keepFloat32;
    }

    public long[] Shape { get; }
    /// <summary>Loaded in float32 whatever the compute dtype (group-norm affine: tiny, and libtorch's mixed kernel is fast).</summary>
    public bool KeepFloat32 { get; }
    public Tensor? Value { get; set; }
    /// <summary>
    /// Reads the weight again exactly as it was loaded (from the checkpoint, which stays mapped),
    /// so LoRA patching can restore it without keeping a second copy in memory. Null for weights
    /// that did not come from a file.
    /// </summary>
    public Func<Tensor>? Reload { get; set; }
    /// <summary>
    /// The stored values before the conversion to the compute dtype (the file's dtype, CPU,
    /// contiguous) — what <see cref="Reload"/> converts; the fused LoRA merge converts as it
    /// reads. Given a <see cref="StoredScratch"/>, a weight stored as it is used comes back as a
    /// flat view of the scratch (no fresh memory per read; valid until the scratch is used
    /// again). Null where <see cref="Reload"/> is, or where the weight lives on another device.
    /// </summary>
    public Func<StoredScratch?, Tensor>? ReloadStored { get; set; }
    public Tensor T => Value ?? throw new InvalidOperationException("weights are not loaded");

    /// <summary>Loaded weights are frozen (no gradient); training adapters keep them so.</summary>
    public bool RequiresGrad => Value?.requires_grad ?? false;
}

/// <summary>
/// Base of every network block: children and weights carry the names of the checkpoint layout
/// the module mirrors, so a parameter's full name is the path of names down to it.
/// Plain classes rather than TorchSharp modules: blocks take several inputs (x, time embedding,
/// context) and weights are loaded, patched by LoRA and converted by us, not by an optimiser.
/// </summary>
public abstract class Net
{
    readonly List<(string Name, Net Child)> _children = new();
    readonly List<(string Name, Weight Weight)> _weights = new();

    protected T Child<T>(string name, T child) where T : Net
    {
        _children.Add((name, child));
        return child;
    }

    protected Weight Param(string name, params long[] shape) => Param(name, false, shape);

    protected Weight Param(string name, bool keepFloat32, params long[] shape)
    {
        var w = new Weight(shape, keepFloat32);
        _weights.Add((name, w));
        return w;
    }

    /// <summary>Every weight below this block with its dotted name.</summary>
    public IEnumerable<(string Name, Weight Weight)> Weights(string prefix = "")
    {
        foreach (var (n, w) in _weights) yield return (prefix + n, w);
        foreach (var (n, c) in _children)
            foreach (var x in c.Weights(prefix + n + "."))
                yield return x;
    }

    /// <summary>This block and every block below it with its dotted name ("" for this one).</summary>
    public IEnumerable<(string Name, Net Net)> Modules(string name = "")
    {
        yield return (name, this);
        foreach (var (n, c) in _children)
            foreach (var x in c.Modules(name.Length == 0 ? n : name + "." + n))
                yield return x;
    }

    /// <summary>The dtype the weights were loaded in (the compute dtype).</summary>
    public ScalarType DType => Weights().First(w => !w.Weight.KeepFloat32).Weight.T.dtype;

    /// <summary>Where the weights live (CPU unless loaded for CUDA).</summary>
    public Device Device => Weights().First().Weight.T.device;
}

/// <summary>A numbered list of children, as nn.ModuleList / nn.Sequential name them.</summary>
public sealed class NetList<T> : Net where T : Net
{
    readonly List<T> _items = new();
    public T this[int i] => _items[i];
    public int Count => _items.Count;
    public IReadOnlyList<T> Items => _items;
    public T Add(T item, int? index = null)
    {
        Child((index ?? _items.Count).ToString(System.Globalization.CultureInfo.InvariantCulture), item);
        _items.Add(item);
        return item;
    }
}
