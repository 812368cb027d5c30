using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Models;

/// <summary>
/// Multi-head scaled dot-product attention, the one place the UNet's and the VAE's attention
/// blocks call: bf16 on an AVX-512 CPU goes to <see cref="FusedAttention"/> when there are enough
/// queries for it to pay; everything else (float32, the reference path; CUDA; autograd; a CPU
/// without AVX-512) to libtorch's scaled_dot_product_attention, exactly as before.
/// </summary>
public static class Attention
{
    /// <summary>
    /// Fewer queries than this stay on libtorch: measured on one Zen 5 core, the fused kernel is
    /// at par from 256 queries and 25–45% faster from 1024 (4096 self-attention: 0.54×), while at
    /// 16–64 queries (SD1.5's innermost levels, under a millisecond either way) libtorch is ahead.
    /// </summary>
    public const long MinQueries = 256;

    /// <summary>Whether these token tensors [B, N, C] go to the fused kernel.</summary>
    public static bool UsesFused(Tensor q, Tensor k, Tensor v) => FusedAttention.Supports(q, k, v) && q.shape[1] >= MinQueries;

    /// <summary>q [B, N, H·D], k and v [B, M, H·D] → [B, N, H·D] (the heads side by side).</summary>
    public static Tensor Tokens(Tensor q, Tensor k, Tensor v, int heads)
    {
        if (UsesFused(q, k, v)) return FusedAttention.Run(q, k, v, heads);
        long b = q.shape[0], n = q.shape[1], c = q.shape[2], d = c / heads;
        using var qh = q.view(b, -1, heads, d).transpose(1, 2);
        using var kh = k.view(b, -1, heads, d).transpose(1, 2);
        using var vh = v.view(b, -1, heads, d).transpose(1, 2);
        using var a = F.scaled_dot_product_attention(qh, kh, vh);
        return a.transpose(1, 2).reshape(b, n, c);
    }

    /// <summary>Single-head attention over the pixels of q, k, v [B, C, H, W] (the VAE's mid block) → [B, C, H, W].</summary>
    public static Tensor Pixels(Tensor q, Tensor k, Tensor v)
    {
        long b = q.shape[0], c = q.shape[1], h = q.shape[2], w = q.shape[3];
        if (q.dtype == ScalarType.BFloat16)
        {
            // bf16 images are stored channels-last, so these are views
            using var pq = q.permute(0, 2, 3, 1).reshape(b, h * w, c);
            using var pk = k.permute(0, 2, 3, 1).reshape(b, h * w, c);
            using var pv = v.permute(0, 2, 3, 1).reshape(b, h * w, c);
            if (UsesFused(pq, pk, pv))
            {
                using var o = FusedAttention.Run(pq, pk, pv, 1);
                using var image = o.view(b, h, w, c);
                return image.permute(0, 3, 1, 2);
            }
        }
        using var tq = q.reshape(b, 1, c, h * w).transpose(2, 3);
        using var tk = k.reshape(b, 1, c, h * w).transpose(2, 3);
        using var tv = v.reshape(b, 1, c, h * w).transpose(2, 3);
        using var a = F.scaled_dot_product_attention(tq, tk, tv);
        using var t = a.transpose(2, 3);
        return t.reshape(b, c, h, w);
    }
}
