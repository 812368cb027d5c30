using LoraCraft.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Tests.Models;

/// <summary>
/// The bf16 fused attention against libtorch's scaled_dot_product_attention computed in float32
/// on the same bf16 inputs: its error must be no worse than libtorch's own bf16 attention.
/// </summary>
public class AttentionTests
{
    static Tensor Reference(Tensor q, Tensor k, Tensor v, int heads)
    {
        long b = q.shape[0], n = q.shape[1], c = q.shape[2], d = c / heads;
        var qh = q.view(b, -1, heads, d).transpose(1, 2);
        var kh = k.view(b, -1, heads, d).transpose(1, 2);
        var vh = v.view(b, -1, heads, d).transpose(1, 2);
        return F.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(b, n, c);
    }

    [SkippableTheory]
    [InlineData(2, 1024, 1024, 320, 8)] // SD1.5 self-attention at 256 px, level 0
    [InlineData(2, 1024, 77, 320, 8)]   // its cross-attention
    [InlineData(2, 256, 256, 640, 8)]   // level 1, head width 80
    [InlineData(2, 64, 77, 1280, 8)]    // level 2, head width 160
    [InlineData(1, 1024, 1024, 512, 1)] // the VAE's mid block at 256 px, one head of 512
    [InlineData(2, 300, 1100, 640, 10)] // SDXL head width 64, keys not a whole panel
    [InlineData(1, 37, 53, 72, 3)]      // odd everything: head width 24, a partial query block
    public void FusedMatchesFloat32AttentionAtLeastAsWellAsLibtorchBf16(int batch, int n, int m, int c, int heads)
    {
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(5);
        var q = randn([batch, n, c], generator: g).to(ScalarType.BFloat16);
        var k = randn([batch, m, c], generator: g).to(ScalarType.BFloat16);
        var v = randn([batch, m, c], generator: g).to(ScalarType.BFloat16);
        Skip.IfNot(FusedAttention.Supports(q, k, v), "no AVX-512 on this CPU: the fused kernel is not used");
        var exact = Reference(q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32), heads);
        var fused = FusedAttention.Run(q, k, v, heads);
        Assert.Equal(ScalarType.BFloat16, fused.dtype);
        Assert.Equal(new long[] { batch, n, c }, fused.shape);
        var fusedError = (fused.to(ScalarType.Float32) - exact).abs();
        var libtorchError = (Reference(q, k, v, heads).to(ScalarType.Float32) - exact).abs();
        double fMax = fusedError.max().item<float>(), lMax = libtorchError.max().item<float>();
        double fMean = fusedError.mean().item<float>(), lMean = libtorchError.mean().item<float>();
        Assert.True(fMax <= lMax, $"max error {fMax:E3} above libtorch bf16's {lMax:E3}");
        Assert.True(fMean <= lMean, $"mean error {fMean:E3} above libtorch bf16's {lMean:E3}");
    }

    [SkippableFact]
    public void LargeScoresStayFinite()
    {
        // scores in the hundreds: the online softmax must rescale, not overflow
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(6);
        var q = (randn([1, 256, 64], generator: g) * 8).to(ScalarType.BFloat16);
        var k = (randn([1, 2000, 64], generator: g) * 8).to(ScalarType.BFloat16);
        var v = randn([1, 2000, 64], generator: g).to(ScalarType.BFloat16);
        Skip.IfNot(FusedAttention.Supports(q, k, v), "no AVX-512 on this CPU");
        var exact = Reference(q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32), 1);
        var fused = FusedAttention.Run(q, k, v, 1).to(ScalarType.Float32);
        Assert.True(fused.isfinite().all().item<bool>());
        var libtorch = Reference(q, k, v, 1).to(ScalarType.Float32);
        Assert.True((fused - exact).abs().max().item<float>() <= (libtorch - exact).abs().max().item<float>());
    }

    [Fact]
    public void Float32StaysOnLibtorchBitForBit()
    {
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(7);
        var q = randn([2, 300, 320], generator: g);
        var k = randn([2, 77, 320], generator: g);
        var v = randn([2, 77, 320], generator: g);
        Assert.False(Attention.UsesFused(q, k, v));
        Assert.True(Attention.Tokens(q, k, v, 8).equal(Reference(q, k, v, 8)).all().item<bool>());
        var img = randn([1, 64, 16, 16], generator: g);
        Tensor Tokens(Tensor t) => t.reshape(1, 1, 64, 256).transpose(2, 3);
        var expected = F.scaled_dot_product_attention(Tokens(img), Tokens(img.Mul(0.5)), Tokens(img)).transpose(2, 3).reshape(1, 64, 16, 16);
        Assert.True(Attention.Pixels(img, img.Mul(0.5), img).equal(expected).all().item<bool>());
    }

    [SkippableFact]
    public void PixelsOfChannelsLastBf16MatchTokens()
    {
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(8);
        var img = LoraCraft.Models.Loading.Layout.ChannelsLast(randn([1, 128, 32, 32], generator: g).to(ScalarType.BFloat16));
        var tokens = img.permute(0, 2, 3, 1).reshape(1, 1024, 128);
        Skip.IfNot(Attention.UsesFused(tokens, tokens, tokens), "no AVX-512 on this CPU");
        var viaPixels = Attention.Pixels(img, img, img);
        var viaTokens = FusedAttention.Run(tokens, tokens, tokens, 1).view(1, 32, 32, 128).permute(0, 3, 1, 2);
        Assert.Equal(img.shape, viaPixels.shape);
        Assert.True(viaPixels.equal(viaTokens).all().item<bool>());
    }
}
