using LoraCraft.Training;
using Xunit;

namespace LoraCraft.Tests.Training;

/// <summary>
/// Buckets against kohya's algorithm as written: the expected values below are the output of a
/// literal Python transcription of `model_util.make_bucket_resolutions` and
/// `BucketManager.select_bucket` (Python's int(), //, float division and list.index(min)).
/// </summary>
public class BucketTests
{
    [Fact]
    public void PredefinedResolutionsFor512AreKohyas()
    {
        (int, int)[] expected =
        [
            (256, 832), (256, 896), (256, 960), (256, 1024), (320, 704), (320, 768), (384, 640), (448, 576), (512, 512),
            (576, 448), (640, 384), (704, 320), (768, 320), (832, 256), (896, 256), (960, 256), (1024, 256),
        ];
        Assert.Equal(expected, BucketManager.MakeResolutions(512, 512, 256, 1024, 64));
    }

    [Fact]
    public void PredefinedResolutionsForARectangleWithSmallSteps()
    {
        (int, int)[] expected =
        [
            (320, 960), (352, 960), (384, 960), (416, 896), (416, 928), (448, 832), (448, 864), (480, 800), (512, 736), (512, 768),
            (544, 704), (576, 672), (608, 608), (608, 640), (640, 608), (672, 576), (704, 544), (736, 512), (768, 512), (800, 480),
            (832, 448), (864, 448), (896, 416), (928, 416), (960, 320), (960, 352), (960, 384),
        ];
        Assert.Equal(expected, BucketManager.MakeResolutions(768, 512, 320, 960, 32));
    }

    public static TheoryData<int, int, bool, int, int, int, int> Selections => new()
    {
        // image w, h, no_upscale, bucket w, h, resized w, h
        { 512, 512, false, 512, 512, 512, 512 },
        { 1024, 768, false, 576, 448, 597, 448 },
        { 768, 1024, false, 448, 576, 448, 597 },
        { 640, 480, false, 576, 448, 597, 448 },
        { 1920, 1080, false, 640, 384, 683, 384 },
        { 300, 1200, false, 256, 1024, 256, 1024 },
        { 2000, 333, false, 1024, 256, 1538, 256 },
        { 577, 911, false, 384, 640, 405, 640 },
        { 64, 64, false, 512, 512, 512, 512 },
        { 448, 832, false, 384, 640, 384, 713 },
        { 512, 512, true, 512, 512, 512, 512 },
        { 1024, 768, true, 512, 384, 512, 384 },
        { 768, 1024, true, 384, 512, 384, 512 },
        { 1920, 1080, true, 640, 384, 683, 384 },
        { 300, 1200, true, 256, 1024, 256, 1024 },
        { 2000, 333, true, 1152, 192, 1153, 192 },
        { 577, 911, true, 384, 576, 384, 606 },
        { 64, 64, true, 64, 64, 64, 64 },
        { 1000, 1000, true, 512, 512, 512, 512 },
        { 448, 832, true, 320, 576, 320, 594 },
    };

    [Theory]
    [MemberData(nameof(Selections))]
    public void SelectBucketMatchesKohya(int w, int h, bool noUpscale, int bw, int bh, int rw, int rh)
    {
        var m = BucketManager.Create(512, 512, 256, 1024, 64, noUpscale);
        var c = m.Select(w, h);
        Assert.Equal((bw, bh, rw, rh), (c.Width, c.Height, c.ResizedWidth, c.ResizedHeight));
        Assert.Equal(bw / (double)bh - w / (double)h, c.AspectError, 12);
    }

    [Fact]
    public void WithoutBucketsEveryImageCoversTheResolution()
    {
        var m = BucketManager.Fixed(512, 512);
        var c = m.Select(1024, 768);
        Assert.Equal((512, 512, 683, 512), (c.Width, c.Height, c.ResizedWidth, c.ResizedHeight));
    }

    [Fact]
    public void InconsistentBucketSettingsAreRefused()
    {
        Assert.Contains("multiple of 8", Assert.Throws<UserErrorException>(() => BucketManager.Create(512, 512, 256, 1024, 60, false)).Message);
        Assert.Contains("below the resolution", Assert.Throws<UserErrorException>(() => BucketManager.Create(1024, 1024, 256, 768, 64, false)).Message);
    }
}
