using LoraCraft.Models.Vae;
using LoraCraft.Pipelines;
using LoraCraft.Sampling;
using LoraCraft.Tests.Conformance;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Pipelines;

/// <summary>
/// Inputs A1111 and ComfyUI take that a first version of the engine did not: sizes that are
/// multiples of 8 but not of 64 (odd latent sides), one step with every sampler, denoise close
/// to 0, blank and full masks, empty prompts.
/// </summary>
public class EdgeInputTests(ITestOutputHelper output)
{
    static StableDiffusionModelRef Model(string kind) => new(ModelCases.Model(kind, false));

    /// <summary>Keeps test rows readable: the cached tiny model of a family.</summary>
    public sealed record StableDiffusionModelRef(LoraCraft.Models.StableDiffusionModel Value);

    static GenerationResult Run(string kind, int width, int height, Func<GenerationRequest, GenerationRequest>? edit = null)
    {
        var request = new GenerationRequest { Prompt = "a red fox", Negative = "blurry", Seed = 5, Steps = 1, Cfg = 3, Sampler = "euler", Width = width, Height = height };
        return StableDiffusionPipeline.Generate(Model(kind).Value, edit is null ? request : edit(request));
    }

    static void AssertImage(GenerationResult r, int width, int height)
    {
        Assert.Equal(new long[] { 1, 3, height, width }, r.Image.shape);
        Assert.Equal(new long[] { 1, 4, height / 8, width / 8 }, r.Latent.shape);
        Assert.True(r.Image.isfinite().all().item<bool>(), "image has non-finite values");
    }

    // latent sides 9, 13, 17, 25, 2 and 1 (the 8-pixel side), square and not
    [SkippableTheory]
    [InlineData("sd15", 72, 104)]
    [InlineData("sd15", 200, 136)]
    [InlineData("sd15", 16, 16)]
    [InlineData("sd15", 8, 64)]
    [InlineData("sd2v", 136, 72)]
    [InlineData("sdxl", 72, 64)]
    [InlineData("sdxl", 104, 200)]
    public void EveryFamilyGeneratesAtSizesThatAreMultiplesOf8ButNotOf64(string kind, int width, int height)
    {
        Fixture.Require();
        using var r = Run(kind, width, height);
        AssertImage(r, width, height);
    }

    [SkippableFact]
    public void NineChannelInpaintingTakesOddSizes()
    {
        Fixture.Require();
        const int w = 72, h = 104;
        using var image = rand([1, 3, h, w], generator: new torch.Generator(2));
        using var mask = zeros(1, 1, h, w);
        mask[.., .., 20..60, 10..50] = 1;
        using var r = Run("sd15-inpaint", w, h, q => q with { InitImage = image, Mask = mask, Denoise = 1 });
        AssertImage(r, w, h);
    }

    [SkippableFact]
    public void TiledVaeWorksAtOddLatentSizes()
    {
        Fixture.Require();
        var vae = Model("sd15").Value.Vae;
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(4);
        var z = randn([1, 4, 9, 13], generator: g);
        Assert.Equal(new long[] { 1, 3, 72, 104 }, VaeTiling.Decode(vae, z, tile: 6, overlap: 2).shape);
        var image = rand([1, 3, 72, 104], generator: g).Mul(2).Sub(1);
        Assert.Equal(new long[] { 1, 4, 9, 13 }, VaeTiling.EncodeMean(vae, image, tile: 6, overlap: 2).shape);
    }

    [SkippableFact]
    public void TiledEncodingPutsEveryTileEdgeOnTheLatentGrid()
    {
        // an 8x8 average pool has no context beyond its cell: tiles aligned to cells reproduce it exactly
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(9);
        var image = randn([1, 3, 72, 104], generator: g);
        Tensor Pool(Tensor t) => nn.functional.avg_pool2d(t, 8).repeat(1, 2, 1, 1)[.., ..4];
        var tiled = VaeTiling.Blend(image, 5, 2, 1, 4, Pool, outScale: 8);
        Assert.True(Fixture.RelL2(tiled, Pool(image)) < 1e-6);
    }

    public static TheoryData<string> AllSamplers()
    {
        var data = new TheoryData<string>();
        foreach (var name in Samplers.Names) data.Add(name);
        return data;
    }

    [SkippableTheory, MemberData(nameof(AllSamplers))]
    public void OneStepWorksWithEverySampler(string sampler)
    {
        Fixture.Require();
        foreach (var scheduler in new[] { "normal", "karras" })
        {
            using var r = Run("sd15", 64, 64, q => q with { Sampler = sampler, Scheduler = scheduler });
            AssertImage(r, 64, 64);
        }
    }

    [SkippableTheory]
    [InlineData(1e-3)]
    [InlineData(1e-9)]
    public void DenoiseCloseToZeroLeavesTheImageAlmostAsItWas(double denoise)
    {
        Fixture.Require();
        using var image = rand([1, 3, 64, 64], generator: new torch.Generator(3));
        using var roundTrip = StableDiffusionPipeline.DecodeLatent(Model("sd15").Value, StableDiffusionPipeline.EncodeImage(Model("sd15").Value, image));
        using var r = Run("sd15", 64, 64, q => q with { InitImage = image, Denoise = denoise, Steps = 2 });
        AssertImage(r, 64, 64);
        // the sampler starts at a sigma of about 0.03 or less: nearly the VAE's round trip
        double err = Fixture.RelL2(r.Image, roundTrip);
        output.WriteLine($"denoise {denoise}: relative L2 to the VAE round trip {err:E2}");
        Assert.True(err < 0.05, $"denoise {denoise} changed the image by {err:E2}");
        Assert.InRange(Schedulers.ForDenoise("normal", NoiseSchedule.Default, 2, denoise).Length, 3, 3);
    }

    [SkippableTheory]
    [InlineData("sd15", false)]
    [InlineData("sd15-inpaint", false)]
    [InlineData("sd15", true)]
    public void ABlankMaskIsAClearErrorAndAFullMaskRepaintsEverything(string kind, bool crop)
    {
        Fixture.Require();
        var model = Model(kind).Value;
        using var image = rand([1, 3, 64, 64], generator: new torch.Generator(6));
        using var black = zeros(1, 1, 64, 64);
        using var white = ones(1, 1, 64, 64);
        var Small = new CropOptions { WorkingSize = 64 };
        GenerationRequest Req(Tensor mask) => new() { Prompt = "x", Seed = 1, Steps = 1, Sampler = "euler", Width = 64, Height = 64, InitImage = image, Mask = mask };
        var e = Assert.Throws<UserErrorException>(() =>
        {
            if (crop) CropAndStitch.Inpaint(model, Req(black), Small).Dispose();
            else StableDiffusionPipeline.Generate(model, Req(black)).Dispose();
        });
        Assert.Equal(CropAndStitch.EmptyMask, e.Message);
        using var full = crop ? CropAndStitch.Inpaint(model, Req(white), Small).Image : StableDiffusionPipeline.Generate(model, Req(white)).Image;
        Assert.Equal(new long[] { 1, 3, 64, 64 }, full.shape);
        Assert.True(Fixture.RelL2(full, image) > 0.05, "a full mask left the image as it was");
    }

    [SkippableFact]
    public void EmptyPromptsGenerate()
    {
        Fixture.Require();
        foreach (var kind in new[] { "sd15", "sdxl" })
        {
            using var r = Run(kind, 64, 64, q => q with { Prompt = "", Negative = "" });
            AssertImage(r, 64, 64);
        }
    }

    [SkippableFact]
    public void UnchangedAtMultiplesOf64()
    {
        // the skip-size upsampling must not touch the usual path: same latent as an explicit 2x upsample
        var f = Fixture.Require();
        var c = f.OfKind("txt2img", "sd15").First();
        var request = new GenerationRequest
        {
            Prompt = c.GetProperty("prompt").GetString()!, Negative = c.GetProperty("negative").GetString()!,
            Seed = c.GetProperty("seed").GetUInt64(), Steps = c.GetProperty("steps").GetInt32(), Cfg = c.GetProperty("cfg").GetDouble(),
            Sampler = c.GetProperty("sampler").GetString()!, Scheduler = c.GetProperty("scheduler").GetString()!,
            Width = c.GetProperty("width").GetInt32(), Height = c.GetProperty("height").GetInt32(), ClipSkip = c.GetProperty("clip_skip").GetInt32(),
        };
        using var r = StableDiffusionPipeline.Generate(Model("sd15").Value, request);
        using var expected = f.Tensor(c, "latent");
        double err = Fixture.RelL2(r.Latent, expected);
        output.WriteLine($"{c.GetProperty("latent")}: {err:E2}");
        Assert.True(err < 1e-3);
    }
}

public class MemoryEstimateTests
{
    [Fact]
    public void GrowsWithPixelsAndGuidanceAndTilingBoundsTheDecode()
    {
        var small = MemoryEstimate.For(320, 128, 2, 512, 512, guided: true);
        var big = MemoryEstimate.For(320, 128, 2, 2048, 2048, guided: true);
        Assert.Equal(16 * small.SamplingBytes, big.SamplingBytes);
        Assert.Equal(2 * MemoryEstimate.For(320, 128, 2, 512, 512, guided: false).SamplingBytes, small.SamplingBytes);
        Assert.Equal(small.DecodeBytes, small.TiledDecodeBytes); // one tile covers 512 px
        Assert.True(big.TiledDecodeBytes < big.DecodeBytes / 8);
        // SD1.5 bf16 at 512²: within a factor 2 of the 0.6-0.7 GB measured above the weights
        Assert.InRange(small.Peak(false) / 1e9, 0.35, 1.4);
    }

    [Fact]
    public void FitKeepsTheModeTurnsTilingOnOrRefuses()
    {
        var need = MemoryEstimate.For(320, 128, 2, 2048, 2048, guided: true);
        Assert.Equal((VaeTilingMode.Auto, null), need.Fit(VaeTilingMode.Auto, false, need.Peak(false), 2048, 2048));
        var (mode, note) = need.Fit(VaeTilingMode.Auto, false, need.Peak(true), 2048, 2048);
        Assert.Equal(VaeTilingMode.On, mode);
        Assert.StartsWith("VAE tiling turned on: decoding 2048x2048 whole needs about", note);
        var off = Assert.Throws<UserErrorException>(() => need.Fit(VaeTilingMode.Off, false, need.Peak(true), 2048, 2048));
        Assert.Contains("VAE tiling would fit: it is turned off", off.Message);
        var none = Assert.Throws<UserErrorException>(() => need.Fit(VaeTilingMode.Auto, false, need.SamplingBytes - 1, 2048, 2048));
        Assert.Matches(@"^2048x2048 needs about \d+\.\d GB of memory beyond the model, \d+\.\d GB is available$", none.Message);
    }

    [Fact]
    public void SidesAbove16384AreRefused()
    {
        var e = Assert.Throws<UserErrorException>(() => new GenerationRequest { Width = 16392, Height = 64 }.Validate());
        Assert.Contains("at most 16384", e.Message);
    }

    [Fact]
    public void SeedsParseAsUsersWriteThem()
    {
        Assert.Equal(ulong.MaxValue, Seeds.Parse("18446744073709551615"));
        Assert.Equal(42UL, Seeds.Parse(" 42 "));
        Assert.True(Seeds.Parse("-1") < uint.MaxValue);
        Assert.True(Seeds.FromNumber(-1) < uint.MaxValue);
        Assert.Throws<UserErrorException>(() => Seeds.Parse("-2"));
        Assert.Throws<UserErrorException>(() => Seeds.FromNumber(-7));
        Assert.Throws<UserErrorException>(() => Seeds.Parse("1e3"));
        Assert.Equal(0UL, Seeds.ForImage(ulong.MaxValue, 1));
    }
}
