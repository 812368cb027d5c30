using LoraCraft.Models;
using LoraCraft.Models.Loading;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Tests.Models;

/// <summary>The bf16 patch (im2col) convolution against float32 and against oneDNN's bf16 convolution.</summary>
public class PatchConvolutionTests
{
    [Theory]
    [InlineData(960, 64, 3, 1, 1, 12, 10)]  // 3x3, odd width
    [InlineData(1280, 32, 3, 2, 1, 9, 9)]   // the UNet's stride-2 downsample
    [InlineData(1920, 48, 1, 1, 0, 6, 7)]   // a 1x1 skip connection
    public void MatchesFloat32AsWellAsOneDnnBf16(int inCh, int outCh, int kernel, int stride, int padding, int h, int w)
    {
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(3);
        var x = Layout.ChannelsLast(randn([2, inCh, h, w], generator: g).to(ScalarType.BFloat16));
        var weight = Layout.ChannelsLast(randn([outCh, inCh, kernel, kernel], generator: g).Mul(0.02).to(ScalarType.BFloat16));
        var bias = randn([outCh], generator: g).to(ScalarType.BFloat16);
        Assert.True(PatchConvolution.Applies(x, weight, stride, padding));
        var exact = F.conv2d(x.to(ScalarType.Float32), weight.to(ScalarType.Float32), bias.to(ScalarType.Float32), strides: [stride, stride], padding: [padding, padding]);
        var patch = PatchConvolution.Run(x, weight, bias, stride, padding);
        var onednn = F.conv2d(x, weight, bias, strides: [stride, stride], padding: [padding, padding]);
        Assert.Equal(exact.shape, patch.shape);
        double pMax = (patch.to(ScalarType.Float32) - exact).abs().max().item<float>();
        double oMax = (onednn.to(ScalarType.Float32) - exact).abs().max().item<float>();
        // both round the float32 sum to bf16 once; the order of the sums differs, so allow one bf16 step of the largest output
        double ulp = exact.abs().max().item<float>() / 128;
        Assert.True(pMax <= Math.Max(oMax, ulp), $"patch convolution error {pMax:E3}, oneDNN {oMax:E3}");
        // the result stays channels-last, as the rest of the bf16 path expects
        Assert.True(patch.permute(0, 2, 3, 1).is_contiguous());
    }

    [Fact]
    public void BandsEqualTheWholeImage()
    {
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(4);
        var x = Layout.ChannelsLast(randn([2, 960, 10, 8], generator: g).to(ScalarType.BFloat16));
        var weight = Layout.ChannelsLast(randn([16, 960, 3, 3], generator: g).Mul(0.02).to(ScalarType.BFloat16));
        var whole = PatchConvolution.Run(x, weight, null, 1, 1, 1L << 30);
        var banded = PatchConvolution.Run(x, weight, null, 1, 1, 8 * 3 * 3 * 960 * 2 * 3); // 3 rows a band
        Assert.True(whole.equal(banded).all().item<bool>());
    }

    [Fact]
    public void LeavesFloat32NarrowAndStridedOneByOneToTheLibrary()
    {
        using var scope = NewDisposeScope();
        var w32 = zeros(8, 960, 3, 3);
        Assert.False(PatchConvolution.Applies(zeros(1, 960, 8, 8), w32, 1, 1)); // float32: the reference path
        var narrow = Layout.ChannelsLast(zeros([8, 640, 3, 3], ScalarType.BFloat16));
        Assert.False(PatchConvolution.Applies(Layout.ChannelsLast(zeros([1, 640, 8, 8], ScalarType.BFloat16)), narrow, 1, 1));
        var oneByOne = Layout.ChannelsLast(zeros([8, 960, 1, 1], ScalarType.BFloat16));
        Assert.False(PatchConvolution.Applies(Layout.ChannelsLast(zeros([1, 960, 8, 8], ScalarType.BFloat16)), oneByOne, 2, 0));
        Assert.False(PatchConvolution.Applies(zeros([1, 960, 8, 8], ScalarType.BFloat16), oneByOne, 1, 0)); // not channels-last
    }
}
