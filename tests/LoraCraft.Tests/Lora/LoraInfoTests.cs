using System.Security.Cryptography;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

public class LoraInfoTests
{
    static LoraInfoTests() => TorchNative.Ensure();

    bool NoFixtures()
    {
        if (FixturePaths.Root is not null) return false;
        throw new SkipException("fixtures not found (../shared/fixtures or LORACRAFT_FIXTURES): skipped");
    }

    static string FixtureLora(string name) => Path.Combine(FixturePaths.Root!, "loras", name + ".safetensors");

    /// <summary>A kohya-style file: per module a down [rank, in], an up [out, rank] and, if given, an alpha of <paramref name="alphaType"/>.</summary>
    internal static void WriteLora(string path, IEnumerable<(string Key, long Rank, float? Alpha)> modules, Dictionary<string, string>? metadata = null,
                                   ScalarType alphaType = ScalarType.Float16, long width = 8)
    {
        using var scope = NewDisposeScope();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (key, rank, alpha) in modules)
        {
            if (alpha is { } a) tensors.Add(new(key + ".alpha", tensor(a, alphaType)));
            tensors.Add(new(key + ".lora_down.weight", randn([rank, width]).to(ScalarType.Float16)));
            tensors.Add(new(key + ".lora_up.weight", randn([width, rank]).to(ScalarType.Float16)));
        }
        SafetensorsWriter.Write(path, tensors, metadata);
    }

    [SkippableTheory]
    [InlineData("sd15-attn", "sd1", LoraAlgorithm.Lora, 4, 2.0, 128, 16, 0, "sd15-attn")]
    [InlineData("sd15-locon", "sd1", LoraAlgorithm.LoCon, 2, 2.0, 277, 24, 0, "sd15-locon")]
    [InlineData("sd15-peft", null, LoraAlgorithm.Lora, 4, 8.0, 128, 16, 0, null)]
    [InlineData("sdxl-attn", "sdxl", LoraAlgorithm.Lora, 4, 4.0, 136, 16, 16, "sdxl-attn")]
    public void FixtureLorasAreDescribedFromTheirHeaders(string name, string? family, LoraAlgorithm algorithm, long rank, double alpha,
                                                         int unet, int te1, int te2, string? title)
    {
        if (NoFixtures()) return;
        var info = LoraInfo.Read(FixtureLora(name));
        Assert.Equal(name, info.Name);
        Assert.Equal(family, info.Family?.Id());
        Assert.Equal(algorithm, info.Algorithm);
        Assert.Equal(rank, info.Rank);
        Assert.Equal(alpha, info.Alpha);
        Assert.Equal(new LoraModuleCounts(unet, te1, te2, 0), info.Modules);
        Assert.Equal(0, info.UnknownTensors);
        Assert.Equal(title, info.Title);
        Assert.Equal(new FileInfo(FixtureLora(name)).Length, info.SizeBytes);
        Assert.Null(info.Hash);

        // the same modules and family as parsing the whole file
        using var file = LoraFile.Load(FixtureLora(name));
        Assert.Equal(file.Modules.Count, info.Modules.Total);
        Assert.Equal(LoraFamilyGuess.Guess(file), info.Family);
        Assert.Equal(file.Algorithm, info.Algorithm);
    }

    [SkippableTheory]
    [InlineData("sd15-loha", LoraAlgorithm.LoHa, 4L)]
    [InlineData("sd15-lokr", LoraAlgorithm.LoKr, null)]
    public void LycorisFilesAreRecognised(string name, LoraAlgorithm algorithm, long? rank)
    {
        if (NoFixtures()) return;
        var info = LoraInfo.Read(Path.Combine(FixturePaths.Root!, "more", "loras", name + ".safetensors"));
        Assert.Equal(algorithm, info.Algorithm);
        Assert.Equal(rank, info.Rank);
        Assert.Equal(ModelFamily.Sd1, info.Family);
        Assert.Equal(128, info.Modules.UNet);
        Assert.Equal(0, info.UnknownTensors);
    }

    [SkippableTheory]
    [InlineData("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 768, null, "sd1")]
    [InlineData("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", 1024, null, "sd2")]
    [InlineData("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 2048, null, "sdxl")]
    [InlineData("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, null, "sd1")]
    [InlineData("text_encoder.text_model.encoder.layers.0.self_attn.q_proj", 1024, null, "sd2")]
    [InlineData("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 1280, null, "sdxl")]
    [InlineData("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, "sdxl_base_v1-0", "sdxl")] // metadata first
    [InlineData("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 32, null, null)]
    [InlineData("lora_unet_down_blocks_0_attentions_0_proj_in", 320, null, null)]
    public void FamilyIsGuessedFromShapesAndMetadata(string key, long inFeatures, string? baseModel, string? family)
    {
        var metadata = baseModel is null ? new Dictionary<string, string>() : new() { ["ss_base_model_version"] = baseModel };
        Assert.Equal(family, LoraFamilyGuess.Guess([(key, [4, inFeatures])], metadata)?.Id());
    }

    [SkippableFact]
    public void HashIsA1111sSha256OfTheDataSection()
    {
        if (NoFixtures()) return;
        using var dir = new TempDir();
        var path = FixtureLora("sd15-attn");
        var info = LoraInfo.Read(path, new FileHashes(dir.File("hashes.json")));
        var bytes = File.ReadAllBytes(path);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes.AsSpan((int)(8 + headerLength))))[..12], info.Hash);
    }

    [SkippableFact]
    public void MostCommonAlphaAndRankWinWhateverTheAlphaDtype()
    {
        using var dir = new TempDir();
        foreach (var type in new[] { ScalarType.Float16, ScalarType.BFloat16, ScalarType.Float32, ScalarType.Float64 })
        {
            var path = dir.File($"mixed-{type}.safetensors");
            WriteLora(path, [("lora_unet_a", 8, 4f), ("lora_unet_b", 8, 3f), ("lora_unet_c", 16, 3f), ("lora_te_d", 8, 1.5f)], alphaType: type);
            var info = LoraInfo.Read(path);
            Assert.Equal(8, info.Rank);
            Assert.Equal(3.0, info.Alpha);
            Assert.Equal(new LoraModuleCounts(3, 1, 0, 0), info.Modules);
        }
    }

    [SkippableFact]
    public void AlphasFarApartAreAllRead()
    {
        // 100 KB factors between the alphas: the reads cannot be one window
        using var dir = new TempDir();
        var path = dir.File("wide.safetensors");
        WriteLora(path, [("lora_unet_a", 32, 7f), ("lora_unet_b", 32, 5f), ("lora_unet_c", 32, 5f), ("lora_unet_d", 32, 7f), ("lora_unet_e", 32, 7f)], width: 1600);
        Assert.Equal(7.0, LoraInfo.Read(path).Alpha);
    }

    [SkippableFact]
    public void WithoutAlphaTensorsTheMetadataAlphaIsUsedAndWithoutThatNone()
    {
        using var dir = new TempDir();
        var withMeta = dir.File("meta.safetensors");
        WriteLora(withMeta, [("lora_unet_a", 4, null)], new() { ["ss_network_alpha"] = "2.5" });
        Assert.Equal(2.5, LoraInfo.Read(withMeta).Alpha);
        var bare = dir.File("bare.safetensors");
        WriteLora(bare, [("lora_unet_a", 4, null)]);
        Assert.Null(LoraInfo.Read(bare).Alpha);
    }

    [SkippableFact]
    public void ACheckpointIsNotALora()
    {
        using var dir = new TempDir();
        var path = dir.File("vae.safetensors");
        using var w = ones([4, 4]);
        SafetensorsWriter.Write(path, [new("decoder.conv_in.weight", w)]);
        var e = Assert.Throws<LoraFormatException>(() => LoraInfo.Read(path));
        Assert.Contains("not a LoRA", e.Message);
        Assert.StartsWith(path, e.Message);
    }

    [SkippableFact]
    public void TitleIsModelspecTitleElseOutputName()
    {
        using var dir = new TempDir();
        var both = dir.File("both.safetensors");
        WriteLora(both, [("lora_unet_a", 4, 4f)], new() { ["modelspec.title"] = "Nice Title", ["ss_output_name"] = "nice_v2" });
        Assert.Equal("Nice Title", LoraInfo.Read(both).Title);
        var kohya = dir.File("kohya.safetensors");
        WriteLora(kohya, [("lora_unet_a", 4, 4f)], new() { ["ss_output_name"] = "nice_v2" });
        Assert.Equal("nice_v2", LoraInfo.Read(kohya).Title);
    }

    [SkippableFact]
    public void TriggerWordsComeFromModelspecThenCivitaiInfoThenA1111Json()
    {
        using var dir = new TempDir();
        var path = dir.File("style.safetensors");
        File.WriteAllText(dir.File("style.civitai.info"), """{"id": 1, "trainedWords": ["pixel art", " retro "]}""");
        File.WriteAllText(dir.File("style.json"), """{"activation text": "a1111 words", "preferred weight": 0.8}""");

        WriteLora(path, [("lora_unet_a", 4, 4f)], new() { ["modelspec.trigger_phrase"] = "zzstyle, pixel art" });
        AssertTriggers("modelspec.trigger_phrase", ["zzstyle", "pixel art"], LoraInfo.Read(path).Triggers);

        WriteLora(path, [("lora_unet_a", 4, 4f)]);
        AssertTriggers("style.civitai.info", ["pixel art", "retro"], LoraInfo.Read(path).Triggers);

        File.Delete(dir.File("style.civitai.info"));
        AssertTriggers("style.json", ["a1111 words"], LoraInfo.Read(path).Triggers);

        File.WriteAllText(dir.File("style.json"), """{"trainedWords": ["from json"]}""");
        AssertTriggers("style.json", ["from json"], LoraInfo.Read(path).Triggers);

        // a broken sidecar costs its words, not the listing
        File.WriteAllText(dir.File("style.json"), "{ not json");
        Assert.Null(LoraInfo.Read(path).Triggers);
    }

    static void AssertTriggers(string source, string[] words, LoraTriggers? actual)
    {
        Assert.NotNull(actual);
        Assert.Equal(source, actual.Source);
        Assert.Equal(words, actual.Words);
    }

    [SkippableFact]
    public void TopTagsSumOverDatasetsTrimmedAndMostFrequentFirst()
    {
        using var dir = new TempDir();
        var path = dir.File("tags.safetensors");
        var many = string.Join(", ", Enumerable.Range(0, 30).Select(i => $"\"rare{i:00}\": 1"));
        WriteLora(path, [("lora_unet_a", 4, 4f)], new()
        {
            ["ss_tag_frequency"] = "{\"10_a\": {\"zzstyle\": 10, \" cloud\": 3, \"tree\": 4}, \"5_b\": {\"cloud\": 2, \"zzstyle\": 5, " + many + "}}",
        });
        var tags = LoraInfo.Read(path).TopTags();
        Assert.Equal(20, tags.Count);
        Assert.Equal([("zzstyle", 15L), ("cloud", 5L), ("tree", 4L), ("rare00", 1L)], tags.Take(4));
        Assert.Single(LoraInfo.Read(path).TopTags(1));
    }

    [SkippableFact]
    public void MalformedTagFrequencyGivesNoTags()
    {
        using var dir = new TempDir();
        var path = dir.File("bad.safetensors");
        WriteLora(path, [("lora_unet_a", 4, 4f)], new() { ["ss_tag_frequency"] = "[1, 2" });
        Assert.Empty(LoraInfo.Read(path).TopTags());
    }

    [SkippableFact]
    public void ListingKeepsTheLibraryOrderReportsBadFilesAndWritesTheHashCacheOnce()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("sub"));
        WriteLora(dir.File("b.safetensors"), [("lora_unet_a", 4, 4f)]);
        WriteLora(dir.File(Path.Combine("sub", "a.safetensors")), [("lora_te_a", 2, 1f)]);
        File.WriteAllText(dir.File("broken.safetensors"), "not a safetensors file");
        var cache = dir.File(Path.Combine("cache", "hashes.json"));

        var rows = LoraInfo.List(new LoraLibrary(dir.Path), new FileHashes(cache));
        Assert.Equal(["b", "broken", "a"], rows.Select(r => Path.GetFileNameWithoutExtension(r.Path)));
        Assert.NotNull(rows[0].Info?.Hash);
        Assert.Null(rows[1].Info);
        Assert.Contains("broken.safetensors", rows[1].Error);
        Assert.Equal(1, rows[2].Info!.Modules.TextEncoder1);
        Assert.Equal(2, File.ReadAllText(cache).Split("addnet|").Length - 1);
    }
}
