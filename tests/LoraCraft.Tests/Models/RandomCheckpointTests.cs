using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using LoraCraft.IO;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Runtime;
using LoraCraft.Text;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Models;

public class RandomCheckpointTests(ITestOutputHelper output)
{
    static RandomCheckpointTests() => TorchNative.Ensure();

    static readonly Dictionary<RandomModelKind, string> FixtureKind = new()
    {
        [RandomModelKind.Sd15] = "sd15", [RandomModelKind.Sd15Inpaint] = "sd15-inpaint",
        [RandomModelKind.Sd2] = "sd2v", [RandomModelKind.Sdxl] = "sdxl",
    };

    public static TheoryData<RandomModelKind> Kinds() => new(Enum.GetValues<RandomModelKind>());

    bool NoFixtures()
    {
        if (FixturePaths.Root is not null) return false;
        throw new SkipException("fixtures not found (../shared/fixtures or LORACRAFT_FIXTURES): skipped");
    }

    static Dictionary<string, (string DType, long[] Shape)> Header(string safetensors) =>
        SafetensorsHeader.Read(safetensors).Tensors.ToDictionary(t => t.Name, t => (SafeDTypes.Name(t.DType), t.Shape));

    static Dictionary<string, (string DType, long[] Shape)> Planned(RandomModelKind kind, RandomModelSize size) =>
        RandomCheckpoint.Plan(RandomArchitecture.Of(kind, size)).ToDictionary(p => p.Name, p => (SafeDTypes.Name(p.DType), p.Shape));

    static void AssertSameEntries(Dictionary<string, (string DType, long[] Shape)> expected, Dictionary<string, (string DType, long[] Shape)> actual)
    {
        Assert.Empty(expected.Keys.Except(actual.Keys).Order().Take(5));
        Assert.Empty(actual.Keys.Except(expected.Keys).Order().Take(5));
        var differing = expected.Where(e => e.Value.DType != actual[e.Key].DType || !e.Value.Shape.SequenceEqual(actual[e.Key].Shape))
            .Select(e => $"{e.Key}: expected {e.Value.DType} [{string.Join(",", e.Value.Shape)}], planned {actual[e.Key].DType} [{string.Join(",", actual[e.Key].Shape)}]");
        Assert.Empty(differing.Take(5));
    }

    [SkippableTheory]
    [InlineData(RandomModelKind.Sd15, "sd15")]
    [InlineData(RandomModelKind.Sdxl, "sdxl")]
    public void FullSizeLayoutEqualsTheReferenceLayout(RandomModelKind kind, string layout)
    {
        if (NoFixtures()) return;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(FixturePaths.Root!, "layouts", layout + ".json")));
        var expected = doc.RootElement.EnumerateObject().ToDictionary(
            p => p.Name, p => (p.Value.GetProperty("dtype").GetString()!, p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray()));
        AssertSameEntries(expected, Planned(kind, RandomModelSize.Full));
    }

    [SkippableTheory, MemberData(nameof(Kinds))]
    public void TinyNamesEqualTheFixtureCheckpoint(RandomModelKind kind)
    {
        if (NoFixtures()) return;
        var fixture = Header(Path.Combine(FixturePaths.Root!, "models", FixtureKind[kind], $"tiny-{FixtureKind[kind]}.safetensors"));
        Assert.Equal(fixture.Keys.Order(), Planned(kind, RandomModelSize.Tiny).Keys.Order());
    }

    [SkippableFact]
    public void FullSd2HasTheSd2FixtureTextNamesAndTheSd15LayoutsUNetAndVae()
    {
        if (NoFixtures()) return;
        var full = Planned(RandomModelKind.Sd2, RandomModelSize.Full);
        string text = CheckpointLayout.Sd2TextPrefix;
        static string Layer(string name) => Regex.Replace(name, @"resblocks\.\d+\.", "resblocks.N.");
        var fixture = Header(Path.Combine(FixturePaths.Root!, "models", "sd2v", "tiny-sd2v.safetensors"));
        Assert.Equal(fixture.Keys.Where(k => k.StartsWith(text, StringComparison.Ordinal)).Select(Layer).ToHashSet().Order(),
                     full.Keys.Where(k => k.StartsWith(text, StringComparison.Ordinal)).Select(Layer).ToHashSet().Order());
        Assert.Equal(24, full.Keys.Count(k => k.StartsWith(text, StringComparison.Ordinal) && k.EndsWith(".ln_1.weight", StringComparison.Ordinal)));
        Assert.Equal([49408, 1024], full[text + "token_embedding.weight"].Shape);
        Assert.Equal([3072, 1024], full[text + "transformer.resblocks.23.attn.in_proj_weight"].Shape);
        Assert.Equal([4096, 1024], full[text + "transformer.resblocks.23.mlp.c_fc.weight"].Shape);

        // SD2's UNet is SD1's with linear projections and a 1024-wide context; the VAE is the same
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(FixturePaths.Root!, "layouts", "sd15.json")));
        var sd15 = doc.RootElement.EnumerateObject().Where(p => !p.Name.StartsWith("cond_stage_model.", StringComparison.Ordinal)).ToDictionary(
            p => p.Name, p => p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray());
        var imageKeys = full.Keys.Where(k => !k.StartsWith(text, StringComparison.Ordinal)).ToHashSet();
        Assert.Equal(sd15.Keys.Order(), imageKeys.Order());
        foreach (var (name, shape) in sd15)
        {
            long[] expected = name.EndsWith("attn2.to_k.weight", StringComparison.Ordinal) || name.EndsWith("attn2.to_v.weight", StringComparison.Ordinal)
                ? [shape[0], 1024]
                : Regex.IsMatch(name, @"^model\.diffusion_model\..*\.proj_(in|out)\.weight$") ? shape[..2] : shape;
            Assert.True(expected.SequenceEqual(full[name].Shape), $"{name}: [{string.Join(",", full[name].Shape)}], expected [{string.Join(",", expected)}]");
        }
    }

    [SkippableFact]
    public void InpaintingDiffersFromSd15OnlyInTheInputConvolution()
    {
        var plain = Planned(RandomModelKind.Sd15, RandomModelSize.Full);
        var inpaint = Planned(RandomModelKind.Sd15Inpaint, RandomModelSize.Full);
        var conv = CheckpointLayout.UNetPrefix + "input_blocks.0.0.weight";
        Assert.Equal([320, 9, 3, 3], inpaint[conv].Shape);
        Assert.Equal([conv], plain.Where(p => !p.Value.Shape.SequenceEqual(inpaint[p.Key].Shape)).Select(p => p.Key));
    }

    [SkippableTheory, MemberData(nameof(Kinds))]
    public void TinyCheckpointLoadsWithItsConfigFolderAndRuns(RandomModelKind kind)
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.safetensors");
        var arch = RandomArchitecture.Of(kind, RandomModelSize.Tiny);
        var configDir = RandomCheckpoint.Make(path, arch, seed: 3);
        Assert.Equal(dir.File("tiny.config"), configDir);

        using var model = CheckpointLoader.Load(path, new LoadOptions { ConfigDir = configDir });
        Assert.Equal(arch.Family, model.Family);
        Assert.Equal(kind == RandomModelKind.Sd15Inpaint, model.Inpainting);
        Assert.Equal(kind == RandomModelKind.Sd2 ? Prediction.V : Prediction.Epsilon, model.Prediction);
        Assert.All(model.TextEncoders, t => Assert.Equal(4, t.Model.Config.Layers));

        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var cond = TextConditioner.Encode(model, "a photo of a cat, öäü");
        AssertFinite("context", cond.Context);
        Assert.Equal(model.UNet.Config.ContextDim, cond.Context.shape[2]);
        using var g = new Generator(5);
        var x = randn([1, model.UNet.Config.InChannels, 16, 16], generator: g);
        var y = cond.Pooled is null ? null : model.UNet.SdxlVector(cond.Pooled, tensor(new float[] { 128, 128, 0, 0, 128, 128 }).unsqueeze(0));
        var eps = model.UNet.Forward(x, tensor(new float[] { 500 }), cond.Context, y);
        AssertFinite("unet", eps);
        Assert.Equal([1, 4, 16, 16], eps.shape);
        var image = model.Vae.Decode(eps / model.LatentScale);
        AssertFinite("vae", image);
        Assert.Equal([1, 3, 128, 128], image.shape);
    }

    void AssertFinite(string what, Tensor t)
    {
        double std = t.to(ScalarType.Float64).std().item<double>();
        output.WriteLine($"{what}: std {std:G4}");
        Assert.True(t.isfinite().all().item<bool>(), $"{what} has non-finite values");
        Assert.True(std > 0, $"{what} is constant");
    }

    [SkippableFact]
    public void SameSeedGivesTheSameBytesAndAnotherSeedOtherValues()
    {
        using var dir = new TempDir();
        var arch = RandomArchitecture.Of(RandomModelKind.Sd15, RandomModelSize.Tiny);
        RandomCheckpoint.Make(dir.File("a.safetensors"), arch, seed: 7);
        RandomCheckpoint.Make(dir.File("b.safetensors"), arch, seed: 7);
        RandomCheckpoint.Make(dir.File("c.safetensors"), arch, seed: 8);
        static byte[] Hash(string p) => SHA256.HashData(File.ReadAllBytes(p));
        Assert.Equal(Hash(dir.File("a.safetensors")), Hash(dir.File("b.safetensors")));

        using var a = SafetensorsFile.Open(dir.File("a.safetensors"));
        using var c = SafetensorsFile.Open(dir.File("c.safetensors"));
        var name = CheckpointLayout.UNetPrefix + "input_blocks.1.0.in_layers.2.weight";
        Assert.False(a.Bytes(name).SequenceEqual(c.Bytes(name)));
        // only the seed in the metadata and the random values differ: zero / one fills do not
        var bias = CheckpointLayout.UNetPrefix + "input_blocks.1.0.in_layers.2.bias";
        Assert.True(a.Bytes(bias).SequenceEqual(c.Bytes(bias)));
    }

    [SkippableFact]
    public void ValuesFollowTheFillRules()
    {
        using var dir = new TempDir();
        var path = dir.File("m.safetensors");
        RandomCheckpoint.Make(path, RandomArchitecture.Of(RandomModelKind.Sdxl, RandomModelSize.Tiny), seed: 1);
        using var f = SafetensorsFile.Open(path);
        double Std(string name) { using var t = f.Load(name, ScalarType.Float32); return t.std().item<float>(); }
        string unet = CheckpointLayout.UNetPrefix, te2 = CheckpointLayout.SdxlText2Prefix;
        // conv 64 x (64*3*3): std 1/sqrt(576); linear 32 -> 64: 1/sqrt(32)
        Assert.InRange(Std(unet + "input_blocks.5.0.in_layers.2.weight"), 0.95 / 24, 1.05 / 24);
        Assert.InRange(Std(te2 + "transformer.resblocks.0.mlp.c_fc.weight"), 0.9 / Math.Sqrt(32), 1.1 / Math.Sqrt(32));
        Assert.InRange(Std(te2 + "token_embedding.weight"), 0.018, 0.022);
        using (var norm = f.Load(unet + "out.0.weight", ScalarType.Float32)) Assert.True(norm.eq(1).all().item<bool>());
        using (var bias = f.Load(te2 + "transformer.resblocks.0.attn.in_proj_bias", ScalarType.Float32)) Assert.True(bias.eq(0).all().item<bool>());
        Assert.Equal([96, 32], f.Info(te2 + "transformer.resblocks.0.attn.in_proj_weight").Shape);
    }

    [SkippableFact]
    public void ConfigFolderReplacesAnOldOneButNotOtherFolders()
    {
        using var dir = new TempDir();
        var path = dir.File("m.safetensors");
        RandomCheckpoint.Make(path, RandomArchitecture.Of(RandomModelKind.Sdxl, RandomModelSize.Tiny), seed: 1);
        RandomCheckpoint.Make(path, RandomArchitecture.Of(RandomModelKind.Sd15, RandomModelSize.Tiny), seed: 1);
        Assert.False(Directory.Exists(Path.Combine(dir.File("m.config"), "text_encoder_2")));
        Assert.Equal(["m.config", "m.safetensors"], dir.Entries().Order());

        var other = dir.File("x.config");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, "keep.txt"), "mine");
        Assert.Throws<UserErrorException>(() => RandomCheckpoint.Make(dir.File("x.safetensors"), RandomArchitecture.Of(RandomModelKind.Sd15, RandomModelSize.Tiny), seed: 1));
        Assert.Equal(["keep.txt"], Directory.GetFileSystemEntries(other).Select(Path.GetFileName));
        Assert.False(File.Exists(dir.File("x.safetensors")), "the clash is found before the checkpoint is written");
    }

    [SkippableFact]
    public void ByteLevelTokenizerLoadsAndSpellsTextInBytes()
    {
        using var dir = new TempDir();
        ByteLevelTokenizer.Write(dir.Path, ClipTokenizer.EndToken);
        Assert.Equal("#version: 0.2\n", File.ReadAllText(dir.File("merges.txt")));
        var tok = ClipTokenizer.FromDirectory(dir.Path);
        Assert.Equal((ByteLevelTokenizer.VocabSize, ByteLevelTokenizer.StartId, ByteLevelTokenizer.EndId), (tok.VocabSize, tok.StartId, tok.EndId));
        // "cat!" -> c a t </w>-less, then "!" alone ends its word; "é" is two bytes
        var ids = tok.Encode("Cat! é").Select(tok.TokenString);
        Assert.Equal(["c", "a", "t</w>", "!</w>", "Ã", "©</w>"], ids);
    }

    [SkippableFact]
    public void ByteLevelVocabularyIsClipsFirst512Tokens()
    {
        if (FixturePaths.ClipTokenizer is null) { throw new SkipException("clip-tokenizer not found: skipped"); }
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(FixturePaths.ClipTokenizer, "vocab.json")));
        var real = doc.RootElement.EnumerateObject().Where(p => p.Value.GetInt32() < 512).OrderBy(p => p.Value.GetInt32()).Select(p => p.Name);
        Assert.Equal(real, ByteLevelTokenizer.Tokens().Take(512));
    }
}
