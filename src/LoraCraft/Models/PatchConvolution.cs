using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Models;

/// <summary>
/// A bf16 convolution of a channels-last image as one matrix product: a 1x1 kernel is a linear
/// layer over the pixels; a k×k kernel multiplies the image's patches ("im2col", each output
/// pixel's k·k·C inputs in a row) by the kernel viewed as [out, k·k·C], in bands of rows so the
/// patch matrix stays small.
/// </summary>
/// <remarks>
/// oneDNN's direct convolution re-lays the kernel out into its blocked format on every call (the
/// primitive is cached, the reordered weights are not). For the UNet's wide layers (960 to 2560
/// input channels) that reorder and the direct kernel's lower efficiency there cost more than
/// the patch copy. Measured in CPU time on one Zen 5 core (bf16, batch 2, SD1.5 at 256 px):
/// 2560→1280 3x3 on 8×8 pixels 29 ms against 318 ms, 1920→1280 on 8×8 20 against 231,
/// 1280→1280 on 4×4 13 against 18, 1920→640 on 16×16 37 against 46, 960→320 on 32×32 39 against
/// 39; 640 channels break even and 320 lose (17 against 14 ms), as do 1x1 kernels below 960
/// channels, so narrow layers (and the whole VAE) stay on oneDNN. A UNet pass at 256 px: 1.6 s
/// of CPU against 3.2 s. The sums are the same products in another order, so results differ
/// from the direct convolution only by bf16 rounding.
/// </remarks>
public static class PatchConvolution
{
    /// <summary>Kernels with at least this many input channels go through patches (or, 1x1, straight to a linear layer).</summary>
    public const long MinInChannels = 960;
    /// <summary>Largest patch matrix built at once; bigger images go in bands of rows.</summary>
    public const long PatchBytes = 32L << 20;

    /// <summary>Whether <see cref="Run"/> takes this call (else use the library convolution).</summary>
    public static bool Applies(Tensor x, Tensor weight, long stride, long padding)
    {
        if (x.dtype != ScalarType.BFloat16 || weight.dtype != ScalarType.BFloat16 || x.device_type != DeviceType.CPU || x.dim() != 4) return false;
        if (torch.is_grad_enabled() && (x.requires_grad || weight.requires_grad)) return false;
        long kernel = weight.shape[2];
        if (weight.shape[3] != kernel) return false;
        bool fits = weight.shape[1] >= MinInChannels && (kernel == 1 ? stride == 1 && padding == 0 : padding > 0 && padding * 2 == kernel - 1);
        return fits && Loading.Layout.IsChannelsLast(x) && Loading.Layout.IsChannelsLast(weight);
    }

    /// <summary>conv2d(x, weight, bias, stride, padding) for a channels-last x; the result is channels-last.</summary>
    public static Tensor Run(Tensor x, Tensor weight, Tensor? bias, long stride, long padding) =>
        Run(x, weight, bias, stride, padding, PatchBytes);

    internal static Tensor Run(Tensor x, Tensor weight, Tensor? bias, long stride, long padding, long patchBytes)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        long o = weight.shape[0], k = weight.shape[2];
        var kernel = weight.permute(0, 2, 3, 1).reshape(o, k * k * c); // [out, kh, kw, in]: a view of the stored kernel
        var nhwc = x.permute(0, 2, 3, 1);
        if (k == 1)
        {
            var pixels = F.linear(nhwc.reshape(n * h * w, c), kernel, bias);
            return pixels.view(n, h, w, o).permute(0, 3, 1, 2).MoveToOuterDisposeScope();
        }
        long ho = (h + 2 * padding - k) / stride + 1, wo = (w + 2 * padding - k) / stride + 1;
        var padded = F.pad(nhwc, [0, 0, padding, padding, padding, padding]); // a new tensor: storage offset 0 below
        long sW = c, sH = (w + 2 * padding) * c, sN = (h + 2 * padding) * sH;
        long rowBytes = wo * k * k * c * x.ElementSize;
        long band = Math.Max(1, patchBytes / rowBytes);
        if (band >= ho * n)
        {
            // the whole batch at once: one product
            var patches = padded.as_strided([n, ho, wo, k, k, c], [sN, stride * sH, stride * sW, sH, sW, 1]).reshape(n * ho * wo, k * k * c);
            return F.linear(patches, kernel, bias).view(n, ho, wo, o).permute(0, 3, 1, 2).MoveToOuterDisposeScope();
        }
        var output = torch.empty([n, ho, wo, o], x.dtype, x.device);
        for (long i = 0; i < n; i++)
            for (long r0 = 0; r0 < ho; r0 += band)
            {
                using var inner = NewDisposeScope();
                long rows = Math.Min(band, ho - r0);
                var patches = padded.as_strided([rows, wo, k, k, c], [stride * sH, stride * sW, sH, sW, 1], i * sN + r0 * stride * sH)
                    .reshape(rows * wo, k * k * c);
                output[i].narrow(0, r0, rows).copy_(F.linear(patches, kernel, bias).view(rows, wo, o));
            }
        return output.permute(0, 3, 1, 2).MoveToOuterDisposeScope();
    }
}
