using LoraCraft.Models;
using LoraCraft.Models.Clip;
using LoraCraft.Models.Random;
using LoraCraft.Tests.Conformance;
using LoraCraft.Text;
using LoraCraft.Training;
using Xunit;

namespace LoraCraft.Tests.Training;

/// <summary>kohya's `--max_token_length` chunking of the ids (get_input_ids) for both padding conventions.</summary>
public class CaptionEncoderTests
{
    static TextEncoderSlot Slot(TempDir dir, bool padWithEnd)
    {
        ByteLevelTokenizer.Write(dir.Path, "<|endoftext|>");
        var tok = ClipTokenizer.FromDirectory(dir.Path);
        var model = new ClipTextModel(new ClipTextConfig { Hidden = 8, Intermediate = 16, Layers = 1, Heads = 2 });
        return new TextEncoderSlot(model, tok, padWithEnd ? tok.EndId : 0);
    }

    [Fact]
    public void LongCaptionsAreCutInto75TokenChunksEachWithStartAndEnd()
    {
        using var dir = new TempDir();
        var slot = Slot(dir, padWithEnd: true);
        string caption = new string('a', 100);   // byte-level: 100 tokens
        using var ids = CaptionEncoder.Ids(slot, [caption], 150);
        Assert.Equal(new long[] { 2, 77 }, ids.shape);
        var rows = ids.data<long>().ToArray();
        int start = slot.Tokenizer.StartId, end = slot.Tokenizer.EndId;
        Assert.Equal(start, rows[0]);
        Assert.Equal(start, rows[77]);
        // chunk 1: 75 text tokens then the row's last id (end/pad); chunk 2: the other 25, end, padding
        Assert.All(rows[1..76], v => Assert.NotEqual(end, v));
        Assert.Equal(end, rows[76]);
        Assert.NotEqual(end, rows[77 + 25]);
        Assert.Equal(end, rows[77 + 26]);
        Assert.Equal(end, rows[153]);
    }

    [Fact]
    public void WithZeroPaddingCutChunksEndWithTheEndTokenAndEmptyOnesStartWithIt()
    {
        using var dir = new TempDir();
        var slot = Slot(dir, padWithEnd: false);
        int end = slot.Tokenizer.EndId;
        using var full = CaptionEncoder.Ids(slot, [new string('a', 200)], 225);
        var rows = full.data<long>().ToArray();
        Assert.Equal(end, rows[76]);            // cut inside the text: the chunk ends with the end token
        using var shortCaption = CaptionEncoder.Ids(slot, ["ab"], 225);
        var s = shortCaption.data<long>().ToArray();
        Assert.Equal(end, s[3]);                // start, a, b, end
        Assert.Equal(end, s[77 + 1]);           // an empty chunk: start, end, padding
        Assert.Equal(0, s[77 + 2]);
        Assert.Equal(end, s[154 + 1]);
    }

    [SkippableFact]
    public void SdxlTrainsWithBothEncodersAndLongCaptions()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        var train = TrainingData.KohyaFolder(dir.Path, count: 1, caption: string.Join(", ", Enumerable.Range(0, 40).Select(i => $"tag{i}")));
        var result = LoraTrainer.Run(TrainingData.Options(f, train, dir.File("out")) with
        {
            ModelPath = f.ModelFile("sdxl"), ConfigDir = f.DiffusersDir("sdxl"), MaxTrainSteps = 2, MaxTokenLength = 150, CacheLatents = true,
        });
        var header = LoraCraft.IO.SafetensorsHeader.Read(result.LoraPath!);
        Assert.Contains(header.Tensors, t => t.Name.StartsWith("lora_te1_text_model_encoder_layers_0_", StringComparison.Ordinal));
        Assert.Contains(header.Tensors, t => t.Name.StartsWith("lora_te2_text_model_encoder_layers_0_", StringComparison.Ordinal));
        Assert.Contains(header.Tensors, t => t.Name.StartsWith("lora_unet_input_blocks_", StringComparison.Ordinal));
        Assert.Equal("sdxl_base_v1-0", header.Metadata["ss_base_model_version"]);
        Assert.Equal("150", header.Metadata["ss_max_token_length"]);
        Assert.Equal("stable-diffusion-xl-v1-base/lora", header.Metadata["modelspec.architecture"]);
    }

    [SkippableFact]
    public void DiskLatentCacheIsReusedWhileTheImageIsUnchanged()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        var train = TrainingData.KohyaFolder(dir.Path, count: 1);
        var options = TrainingData.Options(f, train, dir.File("out")) with { MaxTrainSteps = 1, CacheLatentsToDisk = true };
        var notes = new List<string>();
        var events = new Progress(e => { if (e is TrainingNote n) notes.Add(n.Text); });
        LoraTrainer.Run(options, events);
        var cache = Path.Combine(train, "10_sks disc", "img0" + LatentCache.Suffix);
        Assert.True(File.Exists(cache));
        Assert.DoesNotContain(notes, n => n.Contains("reused"));
        LoraTrainer.Run(options, events);
        Assert.Contains(notes, n => n.Contains("latents: 1 of 1 reused"));
        notes.Clear();
        TrainingData.WriteImage(Path.Combine(train, "10_sks disc", "img0.png"), variant: 4);
        File.SetLastWriteTimeUtc(Path.Combine(train, "10_sks disc", "img0.png"), DateTime.UtcNow.AddMinutes(1));
        LoraTrainer.Run(options, events);
        Assert.DoesNotContain(notes, n => n.Contains("reused"));
    }

    sealed class Progress(Action<TrainingEvent> action) : IProgress<TrainingEvent>
    {
        public void Report(TrainingEvent value) => action(value);
    }
}
