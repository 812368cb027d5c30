using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Pipelines;

/// <summary>What fills the masked area's latent before sampling (A1111's "masked content", latent options).</summary>
public enum MaskedLatentFill { Original, Noise, Zeros }

/// <summary>Mask and image operations A1111's inpainting options need: blur, invert, fill.</summary>
public static class MaskOps
{
    /// <summary>Gaussian blur of a mask [1,1,H,W] with standard deviation <paramref name="radius"/> px (A1111's mask_blur).</summary>
    public static Tensor Blur(Tensor mask, double radius)
    {
        if (radius <= 0) return mask.clone();
        using var scope = NewDisposeScope();
        int half = (int)Math.Ceiling(2.5 * radius);
        var x = TensorMath.Arange(2 * half + 1, ScalarType.Float32).Sub(half);
        var kernel = (x * x).Mul(-1 / (2 * radius * radius)).exp();
        kernel = kernel / kernel.sum();
        var m = mask.to(ScalarType.Float32);
        // separable: rows then columns, edges reflected (the blur does not darken the border)
        int padH = Math.Min(half, (int)m.shape[3] - 1), padV = Math.Min(half, (int)m.shape[2] - 1);
        var rows = F.conv2d(F.pad(m, [padH, padH, 0, 0], PaddingModes.Reflect), kernel.narrow(0, half - padH, 2 * padH + 1).view(1, 1, 1, -1));
        var cols = F.conv2d(F.pad(rows, [0, 0, padV, padV], PaddingModes.Reflect), kernel.narrow(0, half - padV, 2 * padV + 1).view(1, 1, -1, 1));
        return cols.Clamp(0, 1).MoveToOuterDisposeScope();
    }

    public static Tensor Invert(Tensor mask) => mask.RSub(1);

    /// <summary>
    /// A1111's "fill": the masked area ([1,1,H,W], 1 = repaint) takes colours spread in from its
    /// surroundings: normalized blurs of the kept pixels at growing radii, each filling what the
    /// finer ones could not reach (nearby colours at the edge, broad averages deep inside), so
    /// the sampler starts from the neighbourhood's colours instead of what was under the mask.
    /// </summary>
    public static Tensor Fill(Tensor image, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var keep = mask.to(ScalarType.Float32).Greater(0.5).to(ScalarType.Float32).RSub(1);
        var result = image.to(ScalarType.Float32).clone();
        var img = image.to(ScalarType.Float32);
        foreach (double radius in new[] { 2.0, 4.0, 16.0, 64.0, 256.0 })
        {
            var weight = Blur(keep, radius).Add(1e-6);
            var spread = BlurChannels(img * keep, radius) / weight;
            var known = weight.Greater(0.05).to(ScalarType.Float32);
            // fill only what is still unknown, then treat it as known for the coarser passes
            var hole = keep.RSub(1) * known;
            result = (result * hole.RSub(1)).Add(spread * hole);
            img = result;
            keep = (keep.Add(hole)).Clamp(0, 1);
        }
        return result.MoveToOuterDisposeScope();
    }

    static Tensor BlurChannels(Tensor image, double radius)
    {
        var parts = image.split(1, 1).Select(c => Blur(c, radius)).ToArray();
        return torch.cat(parts, 1);
    }
}
