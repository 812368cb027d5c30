using LoraCraft.Models.Vae;
using LoraCraft.Tests.Conformance;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Models;

public class VaeTilingTests
{
    [SkippableTheory]
    [InlineData(10, 64, 16, new long[] { 0 }, 10)]
    [InlineData(64, 64, 16, new long[] { 0 }, 64)]
    [InlineData(96, 64, 16, new long[] { 0, 40 }, 56)]
    [InlineData(128, 64, 16, new long[] { 0, 56 }, 72)]
    [InlineData(160, 64, 16, new long[] { 0, 48, 96 }, 64)]
    public void TilesCoverTheRangeSharingTheOverlap(long n, int tile, int overlap, long[] starts, long size)
    {
        var layout = VaeTiling.Layout(n, tile, overlap);
        Assert.Equal(starts, layout.Starts);
        Assert.Equal(size, layout.Size);
        Assert.Equal(n, layout.Starts[^1] + layout.Size);
    }

    [SkippableFact]
    public void SingleTileEqualsWholeImageDecode()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        var vae = ModelCases.Model("sd15", false).Vae;
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(3);
        var z = randn([1, 4, 12, 10], generator: g);
        Assert.True((VaeTiling.Decode(vae, z, tile: 16) == vae.Decode(z)).all().item<bool>());
    }

    [SkippableFact]
    public void BlendingIsExactForPixelLocalMaps()
    {
        // a map with no spatial context (8x nearest upsampling, a per-pixel channel mix) must come
        // out of the tiling identical to one pass: the blend weights sum to 1 everywhere
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(9);
        var z = randn([1, 4, 40, 36], generator: g);
        var mix = randn([3, 4], generator: g);
        Tensor Local(Tensor t) => nn.functional.interpolate(torch.einsum("oc,bchw->bohw", mix, t), scale_factor: [8.0, 8.0], mode: InterpolationMode.Nearest);
        var tiled = VaeTiling.Blend(z, 16, 6, 8, 3, Local);
        Assert.True(Fixture.RelL2(tiled, Local(z)) < 1e-6);
    }
}
