using LoraCraft.Training;
using Xunit;

namespace LoraCraft.Tests.Training;

public class DatasetConfigTests
{
    static readonly DatasetSpec Defaults = new() { Subsets = [] };
    static readonly SubsetSpec SubsetDefaults = new() { ImageDir = "" };

    [Fact]
    public void GeneralDatasetAndSubsetLevelsOverrideInOrder()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("cfg.toml"), """
            [general]
            shuffle_caption = true
            caption_extension = ".txt"
            keep_tokens = 1
            enable_bucket = true

            [[datasets]]
            resolution = [768, 512]
            batch_size = 2
            bucket_no_upscale = true

              [[datasets.subsets]]
              image_dir = "imgs/a"
              num_repeats = 10
              class_tokens = "sks girl"
              keep_tokens = 2

              [[datasets.subsets]]
              image_dir = "/abs/reg"
              is_reg = true
              flip_aug = true
            """);
        var specs = DatasetConfig.Load(dir.File("cfg.toml"), Defaults, SubsetDefaults);
        var d = Assert.Single(specs);
        Assert.Equal((768, 512, 2, true, true), (d.Width, d.Height, d.BatchSize, d.EnableBucket, d.BucketNoUpscale));
        var a = d.Subsets[0];
        Assert.Equal(Path.Combine(dir.Path, "imgs", "a"), a.ImageDir);
        Assert.Equal((10, "sks girl", ".txt", 2, true, false), (a.Repeats, a.ClassTokens, a.CaptionExtension, a.Caption.KeepTokens, a.Caption.Shuffle, a.IsReg));
        var reg = d.Subsets[1];
        Assert.Equal(("/abs/reg", 1, 1, true, true), (reg.ImageDir, reg.Repeats, reg.Caption.KeepTokens, reg.IsReg, reg.FlipAug));
    }

    [Fact]
    public void UnknownKeysAreErrorsAndUnsupportedOnesAreReported()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("typo.toml"), "[[datasets]]\nresolutoin = 512\n[[datasets.subsets]]\nimage_dir = 'x'\n");
        Assert.Contains("unknown key 'resolutoin'", Assert.Throws<UserErrorException>(() => DatasetConfig.Load(dir.File("typo.toml"), Defaults, SubsetDefaults)).Message);
        File.WriteAllText(dir.File("ignored.toml"), "[[datasets]]\n[[datasets.subsets]]\nimage_dir = 'x'\ntoken_warmup_step = 3\n");
        var warnings = new List<string>();
        DatasetConfig.Load(dir.File("ignored.toml"), Defaults, SubsetDefaults, warnings.Add);
        Assert.Contains(warnings, w => w.Contains("token_warmup_step"));
        File.WriteAllText(dir.File("bad.toml"), "[[datasets]\n");
        Assert.Contains("not valid TOML", Assert.Throws<UserErrorException>(() => DatasetConfig.Load(dir.File("bad.toml"), Defaults, SubsetDefaults)).Message);
    }
}
