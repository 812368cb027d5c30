using LoraCraft.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Tests.Models;

public class LayerTests
{
    [SkippableTheory]
    [InlineData(3, 1)]
    [InlineData(1, 0)]
    public void BandedConvolutionMatchesTheWholeImage(int kernel, int padding)
    {
        // wide enough to go over the band threshold: 32 channels x 512 x 600 floats = 39 MB
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(11);
        var conv = new Conv2d(32, 16, kernel, padding: padding);
        var weights = conv.Weights().ToDictionary(w => w.Name, w => w.Weight);
        weights["weight"].Value = randn([16, 32, kernel, kernel], generator: g) * 0.1;
        weights["bias"].Value = randn([16], generator: g);
        var x = randn([1, 32, 600, 512], generator: g);
        Assert.True(x.numel() * 4 > Conv2d.BandBytes);
        var expected = F.conv2d(x, weights["weight"].T, weights["bias"].T, padding: [padding, padding]);
        var banded = conv.Forward(x);
        Assert.Equal(expected.shape, banded.shape);
        Assert.True((banded - expected).abs().max().item<float>() < 1e-4, "banded convolution differs");
    }

    [SkippableFact]
    public void ChannelsLastConvolutionRunsWholeAndStaysChannelsLast()
    {
        // bf16 channels-last (the fast path's layout) over the band threshold: 64 channels x 600 x 512 x 2 bytes = 39 MB
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(12);
        var conv = new Conv2d(64, 16, 3, padding: 1);
        var weights = conv.Weights().ToDictionary(w => w.Name, w => w.Weight);
        weights["weight"].Value = LoraCraft.Models.Loading.Layout.ChannelsLast((randn([16, 64, 3, 3], generator: g) * 0.1).to(ScalarType.BFloat16));
        weights["bias"].Value = randn([16], generator: g).to(ScalarType.BFloat16);
        var x = LoraCraft.Models.Loading.Layout.ChannelsLast(randn([1, 64, 600, 512], generator: g).to(ScalarType.BFloat16));
        Assert.True(x.numel() * x.ElementSize > Conv2d.BandBytes);
        using var nograd = torch.no_grad();
        var expected = F.conv2d(x, weights["weight"].T, weights["bias"].T, padding: [1, 1]);
        var got = conv.Forward(x);
        Assert.True(LoraCraft.Models.Loading.Layout.IsChannelsLast(got), "the output is not channels-last: it went through bands");
        Assert.True(got.eq(expected).all().item<bool>(), "differs from the whole-image convolution");
    }
}
