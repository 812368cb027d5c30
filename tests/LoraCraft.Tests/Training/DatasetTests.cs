using LoraCraft.Training;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Training;

/// <summary>kohya's folder layout, caption files and caption processing, and everything refused before a model loads.</summary>
public class DatasetTests
{
    static TrainingDataset Scan(string trainDir, int? repeats = null, string? ext = null, string? regDir = null) =>
        TrainingDataset.Scan(TrainingSetup.Datasets(new TrainingOptions
        {
            ModelPath = "unused", OutputDir = "unused", TrainDataDir = trainDir, RegDataDir = regDir, Repeats = repeats, CaptionExtension = ext,
            Width = 64, Height = 64,
        }));

    [Fact]
    public void KohyaFolderGivesRepeatsClassTokensAndFirstCaptionLine()
    {
        using var dir = new TempDir();
        var train = TrainingData.KohyaFolder(dir.Path, count: 2, folder: "10_sks disc");
        File.Delete(Path.Combine(train, "10_sks disc", "img1.txt"));
        using var data = Scan(train);
        Assert.Equal(2, data.Images.Count);
        Assert.All(data.Images, i => Assert.Equal(10, i.Repeats));
        Assert.Equal("sks disc, red, circle", data.Images[0].Caption);
        Assert.Equal("sks disc", data.Images[1].Caption);
        Assert.Equal(20, data.TrainUses);
        Assert.Contains(data.Notes, n => n.Contains("1 .txt captions") && n.Contains("class tokens 'sks disc'"));
    }

    [Fact]
    public void CaptionFilePreferredOverTxtAndReported()
    {
        using var dir = new TempDir();
        var train = TrainingData.KohyaFolder(dir.Path, count: 2);
        File.WriteAllText(Path.Combine(train, "10_sks disc", "img0.caption"), "from caption file");
        using var data = Scan(train);
        Assert.Equal("from caption file", data.Images[0].Caption);
        Assert.Equal("sks disc, red, circle", data.Images[1].Caption);
        Assert.Contains(data.Notes, n => n.Contains("1 .caption, 1 .txt captions"));
        using var onlyTxt = Scan(train, ext: ".txt");
        Assert.Equal("sks disc, red, circle", onlyTxt.Images[0].Caption);
    }

    [Fact]
    public void FlatFolderNeedsRepeats()
    {
        using var dir = new TempDir();
        TrainingData.WriteImage(dir.File("a.png"));
        var e = Assert.Throws<UserErrorException>(() => Scan(dir.Path));
        Assert.Contains("N_class", e.Message);
        using var data = Scan(dir.Path, repeats: 5);
        Assert.Equal(5, data.Images.Single().Repeats);
    }

    [Fact]
    public void FolderWithoutRepeatCountIsNamed()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("mychar"));
        TrainingData.WriteImage(Path.Combine(dir.File("mychar"), "a.png"));
        var e = Assert.Throws<UserErrorException>(() => Scan(dir.Path));
        Assert.Contains(dir.File("mychar"), e.Message);
        Assert.Contains("repeat count", e.Message);
    }

    [Fact]
    public void NoImagesUnreadableImagesAndNonUtf8CaptionsNameTheFile()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("empty"));
        Assert.Contains("no images", Assert.Throws<UserErrorException>(() => Scan(dir.File("empty"))).Message);

        var train = TrainingData.KohyaFolder(dir.Path, count: 1);
        var bad = Path.Combine(train, "10_sks disc", "broken.png");
        File.WriteAllText(bad, "not a png");
        Assert.Contains(bad, Assert.Throws<UserErrorException>(() => Scan(train)).Message);
        File.Delete(bad);

        var caption = Path.Combine(train, "10_sks disc", "img0.txt");
        File.WriteAllBytes(caption, [0x63, 0x61, 0x74, 0xE9, 0x0A]); // Latin-1 "caté"
        var e = Assert.Throws<UserErrorException>(() => Scan(train));
        Assert.Contains(caption, e.Message);
        Assert.Contains("UTF-8", e.Message);
    }

    [Fact]
    public void RegularizationImagesAreRepeatedUpToTheTrainingCount()
    {
        using var dir = new TempDir();
        var train = TrainingData.KohyaFolder(dir.Path, count: 3, folder: "4_sks disc"); // 12 uses
        var reg = dir.File("reg");
        Directory.CreateDirectory(Path.Combine(reg, "1_disc"));
        for (int i = 0; i < 5; i++) TrainingData.WriteImage(Path.Combine(reg, "1_disc", $"r{i}.png"), i);
        using var data = Scan(train, regDir: reg);
        Assert.Equal(12, data.TrainUses);
        Assert.Equal(12, data.RegUses);
        // kohya raises repeats one image at a time, in order: 5 -> 10 -> 12
        Assert.Equal([3, 3, 2, 2, 2], data.Images.Where(i => i.Subset.IsReg).Select(i => i.Repeats));
    }

    [Fact]
    public void EpochBatchesUseEveryRepeatOnceAndDependOnlyOnSeedAndEpoch()
    {
        using var dir = new TempDir();
        var train = TrainingData.KohyaFolder(dir.Path, count: 3, folder: "2_sks disc");
        using var data = Scan(train);
        var a = data.EpochBatches(5, 0);
        Assert.Equal(6, a.Count);
        Assert.Equal(data.BatchesPerEpoch, a.Count);
        Assert.All(data.Images, img => Assert.Equal(2, a.Count(b => ReferenceEquals(b.Images[0], img))));
        Assert.Equal(a.Select(b => b.Images[0].Path), data.EpochBatches(5, 0).Select(b => b.Images[0].Path));
        Assert.NotEqual(a.Select(b => b.Images[0].Path), data.EpochBatches(5, 1).Select(b => b.Images[0].Path));
    }

    [Fact]
    public void ShuffleKeepsLeadingTokensAndDropoutEmptiesTheCaption()
    {
        using var g = new Generator(3);
        var o = new CaptionOptions { Shuffle = true, KeepTokens = 1 };
        var seen = new HashSet<string>();
        for (int i = 0; i < 20; i++)
        {
            var c = Captions.Process("sks, red, circle, dark, blue", o, g);
            Assert.StartsWith("sks, ", c);
            Assert.Equal(["blue", "circle", "dark", "red", "sks"], c.Split(", ").Order());
            seen.Add(c);
        }
        Assert.True(seen.Count > 3, "shuffling should give several orders");
        Assert.Equal("", Captions.Process("sks, red", new CaptionOptions { DropoutRate = 1 }, g));
        Assert.Equal("a photo of sks, red", Captions.Process("sks, red", new CaptionOptions { Prefix = "a photo of" }, g));
        Assert.Equal("sks, red, circle", Captions.Process("sks,red ,circle", new CaptionOptions { Shuffle = true, KeepTokensSeparator = "|||", KeepTokens = 3 }, g));
    }

    [Fact]
    public void TagFrequencyCountsLowerCasedTagsPerFolder()
    {
        var freq = new Dictionary<string, int>();
        Captions.CountTags(freq, "Sks, red, , circle");
        Captions.CountTags(freq, "sks, blue");
        Assert.Equal(2, freq["sks"]);
        Assert.Equal(1, freq["red"]);
        Assert.False(freq.ContainsKey(""));
    }
}
