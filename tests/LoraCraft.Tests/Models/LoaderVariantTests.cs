using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Models.UNet;
using LoraCraft.Models.Vae;
using LoraCraft.Tests.Conformance;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Models;

/// <summary>
/// Checkpoints that differ from the fixtures the way real files do (extra keys, fp32 / bf16
/// storage, no config folder) must load into the same networks.
/// </summary>
public sealed class LoaderVariantTests(ITestOutputHelper output) : IDisposable
{
    const double Tolerance = 1e-4;
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    bool Skip()
    {
        if (Fixture.Instance is not null) return false;
        throw new SkipException(Fixture.MissingMessage);
    }

    static Fixture F => Fixture.Instance!;

    static LoadOptions WithConfig(string kind) => new() { ConfigDir = F.DiffusersDir(kind) };

    /// <summary>The model's output for every `unet` case of <paramref name="kind"/>, with the case's name and expected output.</summary>
    static List<(string Name, Tensor Actual, Tensor Expected)> UNetOutputs(StableDiffusionModel m, string kind)
    {
        using var noGrad = no_grad();
        var results = new List<(string, Tensor, Tensor)>();
        foreach (var c in F.OfKind("unet", kind))
        {
            using var scope = NewDisposeScope();
            float t = c.GetProperty("timestep").GetSingle();
            var eps = m.UNet.Forward(F.Tensor(c, "sample"), tensor(new[] { t }), F.Tensor(c, "context"));
            results.Add(($"{kind} t={t}", eps.MoveToOuterDisposeScope(), F.Tensor(c, "expected").MoveToOuterDisposeScope()));
        }
        Assert.NotEmpty(results);
        return results;
    }

    void AssertMatchesReference(StableDiffusionModel m, string kind)
    {
        var report = new Fixture.Report(Tolerance);
        foreach (var (name, actual, expected) in UNetOutputs(m, kind)) report.Check(name, actual, expected);
        report.Assert(output);
    }

    [SkippableFact]
    public void ExtraKeysOfRealCheckpointsAreIgnored()
    {
        if (Skip()) return;
        var path = _dir.File("extras.safetensors");
        CheckpointRewrite.Write(F.ModelFile("sd15"), path, (_, t) => t,
            ("model_ema.decay", tensor(0.9999f)),
            ("alphas_cumprod", linspace(0.999, 0.005, 1000, dtype: float32)),
            ("cond_stage_model.transformer.text_model.embeddings.position_ids", arange(77, dtype: int64).unsqueeze(0)));
        Assert.Equal(SafeDType.I64, SafetensorsHeader.Read(path)["cond_stage_model.transformer.text_model.embeddings.position_ids"].DType);

        using var m = CheckpointLoader.Load(path, WithConfig("sd15"));

        AssertMatchesReference(m, "sd15");
    }

    [SkippableFact]
    public void Fp32FileGivesExactlyTheFp16FilesOutput()
    {
        if (Skip()) return;
        var path = _dir.File("fp32.safetensors");
        CheckpointRewrite.Write(F.ModelFile("sd15"), path, (_, t) => t.to(float32));
        Assert.All(SafetensorsHeader.Read(path).Tensors, t => Assert.Equal(SafeDType.F32, t.DType));

        using var m = CheckpointLoader.Load(path, WithConfig("sd15"));

        // fp16 -> fp32 is exact, so the loaded weights, and with them the outputs, are identical
        foreach (var ((name, fp32, _), (_, fp16, _)) in UNetOutputs(m, "sd15").Zip(UNetOutputs(ModelCases.Model("sd15", false), "sd15")))
            Assert.True(fp32.eq(fp16).all().item<bool>(), $"{name}: fp32 file differs from fp16 file by {Fixture.RelL2(fp32, fp16):E2}");
    }

    [SkippableFact]
    public void Bf16FileGivesTheOutputOfFp16WeightsRoundedToBf16()
    {
        if (Skip()) return;
        var path = _dir.File("bf16.safetensors");
        CheckpointRewrite.Write(F.ModelFile("sd15"), path, (_, t) => t.to(bfloat16));
        Assert.All(SafetensorsHeader.Read(path).Tensors, t => Assert.Equal(SafeDType.BF16, t.DType));
        using var m = CheckpointLoader.Load(path, WithConfig("sd15"));
        // the same rounding done in memory: fp16 -> bf16 rounds to nearest whatever the route, so
        // a correctly decoded bf16 file gives these outputs exactly
        using var rounded = CheckpointLoader.Load(F.ModelFile("sd15"), WithConfig("sd15"));
        foreach (var (_, w) in rounded.UNet.Weights())
        {
            var old = w.T;
            w.Value = old.to(bfloat16).to(float32);
            old.Dispose();
        }

        foreach (var ((name, bf16, expected), (_, reference, _)) in UNetOutputs(m, "sd15").Zip(UNetOutputs(rounded, "sd15")))
        {
            Assert.True(bf16.eq(reference).all().item<bool>(), $"{name}: differs from in-memory bf16 rounding by {Fixture.RelL2(bf16, reference):E2}");
            // What bf16 storage costs: its 8 significant bits to fp16's 11 move each weight by up to
            // 2^-8 of itself, and these errors add up through the network's ~30 layers: measured
            // 0.9 to 1.4e-2 on this random-weight model. The bound only has to separate that from
            // misread weights (errors of order 1).
            double err = Fixture.RelL2(bf16, expected);
            output.WriteLine($"{name}: bf16 vs reference {err:E2}");
            Assert.True(err is > 0 and < 5e-2, $"{name}: relative L2 {err:E3} outside (0, 5e-2)");
        }
    }

    public static TheoryData<string> Kinds() => new("sd15", "sd15-inpaint", "sd2v", "sdxl");

    /// <summary>A config as a string, for a structural comparison that shows the difference when it fails.</summary>
    static string Json(object config) => JsonSerializer.Serialize(config);

    [SkippableTheory, MemberData(nameof(Kinds))]
    public void ShapesGiveTheConfigsUNetStructure(string kind)
    {
        if (Skip()) return;
        var header = SafetensorsHeader.Read(F.ModelFile(kind));
        var family = CheckpointLayout.Detect(header).Family!.Value;
        var fromShapes = ModelConfigs.UNetFromShapes(header, CheckpointLayout.UNetPrefix, family);
        var fromConfig = ModelConfigs.UNetFromDiffusers(Path.Combine(F.DiffusersDir(kind), "unet", "config.json"));

        // heads are not in the shapes, and the time-id width comes from the text encoder (the loader fills it)
        Assert.Equal(Json(fromConfig with { Heads = [], AdditionTimeEmbedDim = 0 }), Json(fromShapes with { Heads = [], AdditionTimeEmbedDim = 0 }));
        if (family == ModelFamily.Sd1) Assert.Equal(fromConfig.Heads, fromShapes.Heads); // SD1's 8 heads hold for the tiny models too
    }

    [SkippableTheory, MemberData(nameof(Kinds))]
    public void ShapesGiveTheConfigsVae(string kind)
    {
        if (Skip()) return;
        var fromShapes = ModelConfigs.VaeFromShapes(SafetensorsHeader.Read(F.ModelFile(kind)), CheckpointLayout.VaePrefix);
        var fromConfig = ModelConfigs.VaeFromDiffusers(Path.Combine(F.DiffusersDir(kind), "vae", "config.json"));
        Assert.Equal(Json(fromConfig), Json(fromShapes));
    }

    [SkippableFact]
    public void Sd15WithoutConfigFolderMatchesTheReference()
    {
        if (Skip()) return;
        using var m = CheckpointLoader.Load(F.ModelFile("sd15"), new LoadOptions { TokenizerDir = Path.Combine(F.Root, "tokenizer") });
        Assert.Equal(ModelFamily.Sd1, m.Family);
        AssertMatchesReference(m, "sd15");
    }

    [SkippableTheory, MemberData(nameof(Kinds))]
    public void EveryKindLoadsAndRunsWithoutConfigFolder(string kind)
    {
        if (Skip()) return;
        using var m = CheckpointLoader.Load(F.ModelFile(kind), new LoadOptions { TokenizerDir = Path.Combine(F.Root, "tokenizer") });
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        // heads the shapes cannot show are guessed, so only that every network runs is checked here
        foreach (var slot in m.TextEncoders)
        {
            var ids = tensor(slot.Tokenizer.EncodeForModel("a photo of a cat", 77, slot.PadId).Select(i => (long)i).ToArray()).unsqueeze(0);
            Assert.Equal([1, 77, slot.Model.Config.Hidden], slot.Model.Forward(ids).LastHiddenState.shape);
        }
        var c = F.OfKind("unet", kind).First();
        Tensor? y = m.UNet.Config.AdmInChannels > 0 ? zeros(1, m.UNet.Config.AdmInChannels) : null;
        var x = F.Tensor(c, "sample");
        var context = zeros(1, 77, m.UNet.Config.ContextDim);
        Assert.Equal(x.shape[0..1].Concat([4L]).Concat(x.shape[2..]), m.UNet.Forward(x, tensor(new[] { 500f }), context, y).shape);
    }

    [SkippableFact]
    public void EarlySd1TextEncoderLayoutLoads()
    {
        if (Skip()) return;
        // early SD1 files: `cond_stage_model.transformer.<...>` without `text_model.`
        var path = _dir.File("old-clip-layout.safetensors");
        CheckpointRewrite.Write(F.ModelFile("sd15"), path, (_, t) => t,
            name => name.Replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.", StringComparison.Ordinal));
        using var m = CheckpointLoader.Load(path, WithConfig("sd15"));
        var c = F.OfKind("conditioning", "sd15").First();
        using var cond = LoraCraft.Text.TextConditioner.Encode(m, c.GetProperty("prompt").GetString()!);
        using var expected = F.Tensor(c, "context");
        double err = Fixture.RelL2(cond.Context, expected);
        output.WriteLine($"conditioning rel L2 {err:E2}");
        Assert.True(err < Tolerance);
    }
}
