using LoraCraft.Models.Vae;
using LoraCraft.Tests.Conformance;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Models;

public class VaeTilingTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(10, 64, 16, new long[] { 0 })]
    [InlineData(64, 64, 16, new long[] { 0 })]
    [InlineData(100, 64, 16, new long[] { 0, 36 })]
    [InlineData(160, 64, 16, new long[] { 0, 48, 96 })]
    public void TileStartsCoverTheRangeWithOverlap(long n, int tile, int overlap, long[] expected) =>
        Assert.Equal(expected, VaeTiling.Starts(n, tile, overlap));

    [Fact]
    public void SingleTileEqualsWholeImageDecode()
    {
        if (Fixture.Instance is not { } f) { output.WriteLine(Fixture.MissingMessage); return; }
        var vae = ModelCases.Model("sd15", false).Vae;
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(3);
        var z = randn([1, 4, 12, 10], generator: g);
        Assert.True((VaeTiling.Decode(vae, z, tile: 16) == vae.Decode(z)).all().item<bool>());
    }

    [Fact]
    public void TiledDecodeAndEncodeStayCloseToWholeImage()
    {
        if (Fixture.Instance is not { } f) { output.WriteLine(Fixture.MissingMessage); return; }
        var vae = ModelCases.Model("sd15", false).Vae;
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(5);
        // a smooth latent, like a real one (white noise would exaggerate the seams)
        var z = nn.functional.interpolate(randn([1, 4, 6, 5], generator: g), size: [48, 40], mode: InterpolationMode.Bilinear, align_corners: false);
        var whole = vae.Decode(z);
        var tiled = VaeTiling.Decode(vae, z, tile: 24, overlap: 8);
        double decodeErr = Fixture.RelL2(tiled, whole);
        var image = whole.clamp(-1, 1);
        double encodeErr = Fixture.RelL2(VaeTiling.EncodeMean(vae, image, tile: 24, overlap: 8), vae.Encode(image).Mean);
        output.WriteLine($"tiled vs whole: decode rel L2 {decodeErr:E2}, encode rel L2 {encodeErr:E2}");
        Assert.True(decodeErr < 0.1, $"tiled decode differs by {decodeErr:E2}");
        Assert.True(encodeErr < 0.1, $"tiled encode differs by {encodeErr:E2}");
        Assert.True(decodeErr > 0, "several tiles should see less context than one pass");
    }
}
