using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Models;

/// <summary>
/// A branch on a layer's output, applied in the forward pass without touching the layer's weights:
/// LoRA in bypass mode, a LoRA being trained (PEFT's wrapper, ComfyUI's bypass, A1111's
/// `lora_functional` are all this hook). Returns the new output, usually output + branch(input).
/// </summary>
public interface ILayerAdapter
{
    Tensor Apply(AdaptableLayer layer, Tensor input, Tensor output);
}

/// <summary>A Linear or Conv2d: the two leaves adapters attach to.</summary>
public abstract class AdaptableLayer : Net
{
    /// <summary>Weight and bias as declared (the adapter reads shapes or, for DoRA-like schemes, values).</summary>
    public abstract Weight WeightSlot { get; }
    public abstract Weight? BiasSlot { get; }
    /// <summary>Branches run after the layer, in order; null (the usual case) costs nothing.</summary>
    public List<ILayerAdapter>? Adapters { get; set; }

    protected Tensor Adapt(Tensor input, Tensor output)
    {
        if (Adapters is not { Count: > 0 } list) return output;
        foreach (var a in list)
        {
            var next = a.Apply(this, input, output);
            if (!ReferenceEquals(next, output)) output.Dispose();
            output = next;
        }
        return output;
    }
}

public sealed class Linear : AdaptableLayer
{
    readonly Weight _w;
    readonly Weight? _b;
    public Linear(long inFeatures, long outFeatures, bool bias = true)
    {
        _w = Param("weight", outFeatures, inFeatures);
        _b = bias ? Param("bias", outFeatures) : null;
    }
    public override Weight WeightSlot => _w;
    public override Weight? BiasSlot => _b;
    public Tensor Forward(Tensor x) => Adapt(x, F.linear(x, _w.T, _b?.T));
}

public sealed class Conv2d : AdaptableLayer
{
    readonly Weight _w;
    readonly Weight? _b;
    readonly long _stride, _padding;
    public Conv2d(long inChannels, long outChannels, long kernel, long stride = 1, long padding = 0, bool bias = true)
    {
        _w = Param("weight", outChannels, inChannels, kernel, kernel);
        _b = bias ? Param("bias", outChannels) : null;
        _stride = stride;
        _padding = padding;
    }
    public override Weight WeightSlot => _w;
    public override Weight? BiasSlot => _b;
    public long Stride => _stride;
    public long Padding => _padding;
    /// <summary>Inputs above this many bytes are convolved in bands of rows (see <see cref="Forward"/>).</summary>
    public const long BandBytes = 32L << 20;

    /// <summary>
    /// A large stride-1 convolution of a planar (NCHW) image (the float32 VAE at 512 px and up)
    /// runs over horizontal bands of rows, each with the rows its kernel reaches above and below.
    /// The sums per output pixel are the same; the convolution library's working buffers shrink
    /// from whole-image to band size, which is what kept SD1.5 at 512 px above 3 GB.
    /// </summary>
    /// <remarks>
    /// A channels-last image (the bf16 path) is convolved whole: oneDNN then needs no copy of it,
    /// and bands cost twice the time (each band padded, then copied into the output: 128→128
    /// channels at 512² px 228 against 114 ms on this 2-core Zen 5) and more memory (a 512 px
    /// bf16 VAE decode peaked 60 MB higher in bands).
    /// </remarks>
    public Tensor Forward(Tensor x) => Adapt(x, Convolve(x));

    Tensor Convolve(Tensor x)
    {
        if (PatchConvolution.Applies(x, _w.T, _stride, _padding)) return PatchConvolution.Run(x, _w.T, _b?.T, _stride, _padding);
        long rowBytes = x.shape[0] * x.shape[1] * x.shape[3] * x.ElementSize;
        long kernel = _w.Shape[2];
        // banding writes into slices of one output: a memory trick for inference only
        if (_stride != 1 || rowBytes * x.shape[2] <= BandBytes || _padding * 2 != kernel - 1 || Autograd.Recording
            || (x.device_type == DeviceType.CPU && Loading.Layout.IsChannelsLast(x)))
            return F.conv2d(x, _w.T, _b?.T, strides: [_stride, _stride], padding: [_padding, _padding]);
        long h = x.shape[2], band = Math.Max(8, BandBytes / 2 / rowBytes);
        var output = torch.empty([x.shape[0], _w.Shape[0], h, x.shape[3]], x.dtype, x.device);
        for (long r0 = 0; r0 < h; r0 += band)
        {
            using var scope = NewDisposeScope();
            long r1 = Math.Min(h, r0 + band);
            long in0 = Math.Max(0, r0 - _padding), in1 = Math.Min(h, r1 + _padding);
            var rows = x.narrow(2, in0, in1 - in0);
            // rows beyond the image are the zero padding the whole-image convolution would add
            var padded = F.pad(rows, [0, 0, _padding - (r0 - in0), _padding - (in1 - r1)]);
            var part = F.conv2d(padded, _w.T, _b?.T, padding: [0, _padding]);
            output.narrow(2, r0, r1 - r0).copy_(part);
        }
        return output;
    }
}

public sealed class GroupNorm : Net
{
    readonly Weight _w, _b;
    readonly long _groups;
    readonly double _eps;
    public GroupNorm(long groups, long channels, double eps)
    {
        _w = Param("weight", keepFloat32: true, channels);
        _b = Param("bias", keepFloat32: true, channels);
        _groups = groups;
        _eps = eps;
    }
    /// <summary>Groups smaller than this are normalised in float64 (see <see cref="Forward"/>).</summary>
    public const long SmallGroup = 1024;

    /// <summary>
    /// libtorch's fused kernel, except for small groups: at the 1x1 bottleneck of a 64 px image a
    /// group holds 2 values, the statistics are ill-conditioned and fp32 rounding there changed a
    /// whole reference generation (8e-2 off). Those tensors are tiny, so float64 costs nothing.
    /// </summary>
    public Tensor Forward(Tensor x)
    {
        if (x.numel() / (x.shape[0] * _groups) >= SmallGroup) return F.group_norm(x, _groups, _w.T, _b.T, _eps);
        using var scope = NewDisposeScope();
        var y = F.group_norm(x.to(ScalarType.Float64), _groups, _w.T.to(ScalarType.Float64), _b.T.to(ScalarType.Float64), _eps);
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }
}

public sealed class LayerNorm : Net
{
    readonly Weight _w, _b;
    readonly long _dim;
    readonly double _eps;
    public LayerNorm(long dim, double eps = 1e-5)
    {
        _w = Param("weight", dim);
        _b = Param("bias", dim);
        _dim = dim;
        _eps = eps;
    }
    public Tensor Forward(Tensor x) => F.layer_norm(x, [_dim], _w.T, _b.T, _eps);
}

public sealed class Embedding : Net
{
    readonly Weight _w;
    public Embedding(long count, long dim) => _w = Param("weight", count, dim);
    public Tensor Forward(Tensor ids) => _w.T.index_select(0, ids.flatten()).view([.. ids.shape, -1]);
    public Tensor Table => _w.T;
}

/// <summary>
/// Nearest-neighbour upsampling then a 3x3 convolution (UNet and VAE decoder alike): 2x, or to
/// the given size — the UNet's skip connection, which is odd-sized when the latent is (a 72 px
/// side is a 9-wide latent, downsampled to 5, then 10, and must meet the 9-wide skip), as
/// ComfyUI's `Upsample(x, output_shape)` and diffusers' `upsample_size` do.
/// </summary>
public sealed class Upsample : Net
{
    readonly Conv2d _conv;
    public Upsample(int channels) => _conv = Child("conv", new Conv2d(channels, channels, 3, padding: 1));
    public Tensor Forward(Tensor x, long[]? size = null)
    {
        using var up = size is null || (size[0] == x.shape[2] * 2 && size[1] == x.shape[3] * 2)
            ? F.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest)
            : F.interpolate(x, size: size, mode: InterpolationMode.Nearest);
        return _conv.Forward(up);
    }
}

public static class Activations
{
    /// <summary>
    /// SiLU in place. TorchSharp's in-place functional hands back a second wrapper of the same
    /// tensor; left to a dispose scope it keeps the storage alive until the scope ends (64 MB per
    /// call in the VAE at 512 px), so it is released here and the original returned.
    /// </summary>
    public static Tensor SiluInPlace(Tensor t)
    {
        // a new tensor when training: the caller then owns (and disposes) it instead of t
        if (Autograd.Recording) return F.silu(t);
        F.silu(t, inplace: true).Dispose();
        return t;
    }
}
