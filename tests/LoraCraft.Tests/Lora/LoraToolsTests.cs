using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Lora.Tools;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Pipelines;
using LoraCraft.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>merge-into, extract, resize, merge, convert and bake-blocks on tiny random models.</summary>
public class LoraToolsTests(ITestOutputHelper output)
{
    static LoraToolsTests() => TorchNative.Ensure();

    /// <summary>A tiny random checkpoint file (fp16, as make-model writes it) and its config folder.</summary>
    static (string Path, string Config) Checkpoint(TempDir dir, RandomModelKind kind = RandomModelKind.Sd15, string name = "base")
    {
        var path = dir.File(name + ".safetensors");
        return (path, RandomCheckpoint.Make(path, RandomArchitecture.Of(kind, RandomModelSize.Tiny), seed: 11)!);
    }

    static StableDiffusionModel Load(string path, string config) => CheckpointLoader.Load(path, new LoadOptions { ConfigDir = config });

    static string RandomLoraFor(TempDir dir, string model, string config, string name, ulong seed, RandomLoraLayers layers = RandomLoraLayers.All, int rank = 4)
    {
        var path = dir.File(name + ".safetensors");
        using var m = Load(model, config);
        RandomLora.Make(path, new LoraTargets(m), new RandomLoraOptions(Rank: rank, Alpha: rank / 2.0, Seed: seed, Layers: layers));
        return path;
    }

    /// <summary>Every patchable weight of the model (float32 copies), after applying <paramref name="apps"/>.</summary>
    static Dictionary<string, Tensor> Patched(StableDiffusionModel model, Func<LoraTargets, IReadOnlyList<LoraApplication>> apps)
    {
        using var patcher = new LoraPatcher();
        patcher.Apply(apps(new LoraTargets(model)));
        return Weights.Snapshot(model).ToDictionary(p => p.Key, p => p.Value.to(ScalarType.Float32));
    }

    static LoraApplication App(LoraTargets t, string lora, double unet, double te) => new(LoraPlan.Create(LoraFile.Load(lora), t), unet, te);

    static double MaxRelative(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b, Dictionary<string, Tensor> baseline) =>
        a.Keys.Select(k => (b[k] - baseline[k]).norm().item<float>() is var d && d > 0 ? (a[k] - b[k]).norm().item<float>() / d : (a[k] - b[k]).norm().item<float>()).Max();

    [SkippableTheory]
    [InlineData(RandomModelKind.Sd15)]
    [InlineData(RandomModelKind.Sdxl)] // fused OpenCLIP in_proj of the second text encoder
    public void MergeIntoBakesTheLorasAsThePatcherMergesThem(RandomModelKind kind)
    {
        using var dir = new TempDir();
        var (model, config) = Checkpoint(dir, kind);
        string a = RandomLoraFor(dir, model, config, "a", 1), b = RandomLoraFor(dir, model, config, "b", 2, RandomLoraLayers.Attention);
        string merged32 = dir.File("merged32.safetensors"), merged16 = dir.File("merged16.safetensors");
        var loras = new[] { new LoraStrength(a, 0.8, 0.5), new LoraStrength(b, 0.3, 1.2) };
        var result = LoraMergeInto.Run(new MergeIntoRequest(model, loras, merged32) { DType = SafeDType.F32 });
        Assert.All(result.Loras, l => Assert.Empty(l.Unmatched));
        LoraMergeInto.Run(new MergeIntoRequest(model, loras, merged16));

        Dictionary<string, Tensor> expected, baseline;
        using (var m = Load(model, config))
        {
            baseline = Weights.Snapshot(m).ToDictionary(p => p.Key, p => p.Value.to(ScalarType.Float32));
            expected = Patched(m, t => [App(t, a, 0.8, 0.5), App(t, b, 0.3, 1.2)]);
        }
        // float32 output: the very weights the patcher computes
        using (var m = Load(merged32, config))
        {
            var actual = Weights.Snapshot(m);
            double err = MaxRelative(actual, expected, baseline);
            output.WriteLine($"{kind} fp32 merge vs patcher: largest relative difference of an update {err:E2}");
            Assert.True(err < 1e-6, $"{err:E2}");
        }
        // the input's types (fp16): each stored value is the patched one rounded to fp16
        using (var m = Load(merged16, config))
            foreach (var (name, w) in Weights.Snapshot(m))
                Assert.True((w == expected[name].to(ScalarType.Float16).to(ScalarType.Float32)).all().item<bool>(), $"{name} is not the patched weight rounded to fp16");

        // same keys, order, shapes and types as the input; the merged LoRAs in the metadata
        var input = SafetensorsHeader.Read(model);
        var written = SafetensorsHeader.Read(merged16);
        Assert.Equal(input.Tensors.Select(t => (t.Name, t.DType, string.Join("x", t.Shape))), written.Tensors.Select(t => (t.Name, t.DType, string.Join("x", t.Shape))));
        Assert.Contains("\"name\":\"a\"", written.Metadata["loracraft.merged_loras"]);
        Assert.Contains("exists", Assert.Throws<UserErrorException>(() => LoraMergeInto.Run(new MergeIntoRequest(model, loras, merged16))).Message);
    }

    [SkippableFact]
    public void MergeIntoThenGenerateEqualsGenerateWithTheLoraWithinFp16Rounding()
    {
        using var dir = new TempDir();
        var (model, config) = Checkpoint(dir);
        string lora = RandomLoraFor(dir, model, config, "style", 3);
        string merged = dir.File("merged.safetensors");
        LoraMergeInto.Run(new MergeIntoRequest(model, [new LoraStrength(lora, 0.9, 0.9)], merged));
        var request = new GenerationRequest { Prompt = "a cat", Seed = 2, Steps = 4, Sampler = "euler", Width = 64, Height = 64 };
        Tensor withLora, fromMerged;
        using (var m = Load(model, config))
        using (var patcher = new LoraPatcher())
        {
            patcher.Apply([App(new LoraTargets(m), lora, 0.9, 0.9)]);
            using var r = StableDiffusionPipeline.Generate(m, request);
            withLora = r.Latent.clone();
        }
        using (var m = Load(merged, config))
        using (var r = StableDiffusionPipeline.Generate(m, request))
            fromMerged = r.Latent.clone();
        double err = Conformance.Fixture.RelL2(fromMerged, withLora);
        output.WriteLine($"latent: merged-in fp16 checkpoint vs LoRA applied, relative L2 {err:E2}");
        // the stored weights are rounded to fp16 (2^-11 relative); the latent moves by that order
        Assert.True(err < 1e-2, $"{err:E2}");
    }

    [SkippableFact]
    public void ExtractRecoversAKnownDelta()
    {
        using var dir = new TempDir();
        var (model, config) = Checkpoint(dir);
        string lora = RandomLoraFor(dir, model, config, "known", 5);
        string tuned = dir.File("tuned.safetensors");
        LoraMergeInto.Run(new MergeIntoRequest(model, [new LoraStrength(lora, 1, 1)], tuned) { DType = SafeDType.F32 });
        string extracted = dir.File("extracted.safetensors");
        var result = LoraExtract.Run(new ExtractRequest(model, tuned, new RankRule(6), extracted) { ConvRank = 6, ClampQuantile = 1, MinDiff = 1e-6 });
        Assert.True(result.TextEncoders);
        output.WriteLine($"{result.Modules.Count} modules, TE max diff {result.TextEncoderMaxDiff:E2}");

        using var m = Load(model, config);
        var targets = new LoraTargets(m);
        using var known = LoraFile.Load(lora);
        using var got = LoraFile.Load(extracted);
        var gotByTarget = LoraPlan.Create(got, targets).Matched.ToDictionary(x => x.Target.Name + x.Target.Component, x => x.Module);
        double worst = 0;
        int compared = 0;
        using var noGrad = torch.no_grad();
        foreach (var (module, target) in LoraPlan.Create(known, targets).Matched.Where(x => LoraExtract.Covers(x.Target, conv: true)))
        {
            var zero = zeros(target.Weight.Shape);
            var want = module.MergedDelta(zero, 1);
            var have = gotByTarget[target.Name + target.Component].MergedDelta(zero, 1);
            worst = Math.Max(worst, Conformance.Fixture.RelL2(have, want));
            compared++;
        }
        output.WriteLine($"{compared} layers: worst relative error of the extracted update {worst:E2}");
        Assert.True(compared > 100);
        Assert.True(worst < 1e-3, $"{worst:E2}");
        // a text encoder that did not change is left out
        var unetOnly = LoraExtract.Run(new ExtractRequest(model, tuned, new RankRule(4), dir.File("unet.safetensors")) { MinDiff = 10 });
        Assert.False(unetOnly.TextEncoders);
        Assert.Equal(0, LoraInfo.Read(dir.File("unet.safetensors")).Modules.TextEncoder1);
    }

    [SkippableFact]
    public void ResizeToTheSameRankIsLosslessAndToALowerOneKeepsWhatItReports()
    {
        using var dir = new TempDir();
        var (model, config) = Checkpoint(dir);
        string lora = RandomLoraFor(dir, model, config, "r4", 6);
        string same = dir.File("same.safetensors"), lower = dir.File("lower.safetensors");
        LoraResize.Run(new ResizeRequest(lora, new RankRule(4), same) { DType = SafeDType.F32 });
        var report = LoraResize.Run(new ResizeRequest(lora, new RankRule(2), lower) { DType = SafeDType.F32 });
        using var original = LoraFile.Load(lora);
        using var a = LoraFile.Load(same);
        using var b = LoraFile.Load(lower);
        var byKeyA = a.Modules.ToDictionary(m => m.Key);
        var byKeyB = b.Modules.ToDictionary(m => m.Key);
        var reported = report.Modules.ToDictionary(m => m.Key);
        using var noGrad = torch.no_grad();
        double worstSame = 0, worstReport = 0;
        foreach (var m in original.Modules)
        {
            var shape = LoraMerge.LayerShape(m)!;
            var d = m.MergedDelta(zeros(shape), 1);
            worstSame = Math.Max(worstSame, Conformance.Fixture.RelL2(byKeyA[m.Key].MergedDelta(zeros(shape), 1), d));
            var d2 = byKeyB[m.Key].MergedDelta(zeros(shape), 1);
            double kept = d2.norm().item<float>() / d.norm().item<float>();
            worstReport = Math.Max(worstReport, Math.Abs(kept - reported[m.Key].FroRetained));
            Assert.Equal(2, reported[m.Key].NewRank);
        }
        output.WriteLine($"same rank: worst relative error {worstSame:E2}; rank 2: Frobenius share off the report by at most {worstReport:E2}, average kept {report.AverageFroRetained:P2}");
        Assert.True(worstSame < 1e-5, $"{worstSame:E2}");
        Assert.True(worstReport < 1e-4, $"{worstReport:E2}");
        Assert.Contains("lowers the rank", Assert.Throws<UserErrorException>(() => LoraResize.Run(new ResizeRequest(lora, new RankRule(8), dir.File("x.safetensors")))).Message);
    }

    [SkippableFact]
    public void ConcatMergeEqualsApplyingBothAndSvdAtTheSummedRankToo()
    {
        using var dir = new TempDir();
        var (model, config) = Checkpoint(dir);
        string a = RandomLoraFor(dir, model, config, "a", 7), b = RandomLoraFor(dir, model, config, "b", 8, RandomLoraLayers.Attention);
        string concat = dir.File("concat.safetensors"), svd = dir.File("svd.safetensors");
        var merged = LoraMerge.Run(new MergeRequest([new WeightedLora(a, 0.7), new WeightedLora(b, -0.4)], concat) { DType = SafeDType.F32 });
        LoraMerge.Run(new MergeRequest([new WeightedLora(a, 0.7), new WeightedLora(b, -0.4)], svd) { SvdRank = 8, DType = SafeDType.F32 });
        using var m = Load(model, config);
        var baseline = Weights.Snapshot(m).ToDictionary(p => p.Key, p => p.Value.to(ScalarType.Float32));
        var both = Patched(m, t => [App(t, a, 0.7, 0.7), App(t, b, -0.4, -0.4)]);
        double concatErr = MaxRelative(Patched(m, t => [App(t, concat, 1, 1)]), both, baseline);
        double svdErr = MaxRelative(Patched(m, t => [App(t, svd, 1, 1)]), both, baseline);
        output.WriteLine($"concat vs both applied {concatErr:E2}; SVD at rank 8 (= 4 + 4) {svdErr:E2}");
        Assert.True(concatErr < 1e-5, $"{concatErr:E2}");
        Assert.True(svdErr < 1e-4, $"{svdErr:E2}");
        Assert.Equal(8, merged.MaxRank); // ranks add where both have a module
    }

    [SkippableFact]
    public void ConvertRoundTripIsIdentity()
    {
        using var dir = new TempDir();
        var (model, config) = Checkpoint(dir);
        string kohya = RandomLoraFor(dir, model, config, "kohya", 9, RandomLoraLayers.All);
        string peft = dir.File("peft.safetensors"), back = dir.File("back.safetensors");
        LoraConvert.Run(new ConvertRequest(kohya, LoraNaming.Peft, peft) { Model = model });
        LoraConvert.Run(new ConvertRequest(peft, LoraNaming.Kohya, back) { Model = model });
        Assert.All(SafetensorsHeader.Read(peft).Tensors, t => Assert.Matches(@"^(unet|text_encoder)\..*\.lora_[AB]\.weight$", t.Name));
        using var a = SafetensorsFile.Open(kohya);
        using var b = SafetensorsFile.Open(back);
        Assert.Equal(a.Tensors.Select(t => t.Name).Order(), b.Tensors.Select(t => t.Name).Order());
        foreach (var t in a.Tensors)
        {
            Assert.Equal(t.DType, b.Info(t.Name).DType);
            Assert.True(a.Bytes(t.Name).SequenceEqual(b.Bytes(t.Name)), $"{t.Name} changed");
        }
        // and the peft file applies as the kohya one does
        using var m = Load(model, config);
        var baseline = Weights.Snapshot(m).ToDictionary(p => p.Key, p => p.Value.to(ScalarType.Float32));
        Assert.True(MaxRelative(Patched(m, t => [App(t, peft, 1, 1)]), Patched(m, t => [App(t, kohya, 1, 1)]), baseline) < 1e-6);
    }

    [SkippableFact]
    public void BakedBlocksEqualBlockWeightsAtRunTime()
    {
        using var dir = new TempDir();
        var (model, config) = Checkpoint(dir);
        string lora = RandomLoraFor(dir, model, config, "l", 10);
        // 0, 0.5 and 1 per block (26 values)
        string spec = string.Join(",", Enumerable.Range(0, 26).Select(i => (i % 3 * 0.5).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        var blocks = LoraBlockWeights.Parse(spec);
        string baked = dir.File("baked.safetensors");
        var result = LoraBakeBlocks.Run(new BakeBlocksRequest(lora, blocks, baked) { Model = model });
        output.WriteLine($"{result.Scaled} scaled, {result.Dropped} dropped, {result.Kept} kept");
        Assert.True(result.Scaled > 0 && result.Dropped > 0 && result.Kept > 0);
        using var m = Load(model, config);
        var baseline = Weights.Snapshot(m).ToDictionary(p => p.Key, p => p.Value.to(ScalarType.Float32));
        var runtime = Patched(m, t => [App(t, lora, 1, 1) with { Blocks = blocks }]);
        var bakedWeights = Patched(m, t => [App(t, baked, 1, 1)]);
        // zero blocks are left exactly original; halved factors are stored in fp16, where the
        // smallest values of an up factor (~1e-5, subnormal) lose bits when halved
        foreach (var (name, w) in runtime.Where(p => (p.Value == baseline[p.Key]).all().item<bool>()))
            Assert.True((bakedWeights[name] == w).all().item<bool>(), $"{name}: a zero block was changed");
        double err = MaxRelative(bakedWeights, runtime, baseline);
        output.WriteLine($"baked vs run-time block weights: largest relative difference of an update {err:E2}");
        Assert.True(err < 1e-3, $"{err:E2}");
    }

    [SkippableFact]
    public void ToolsRefuseClearly()
    {
        using var dir = new TempDir();
        var (sd1, c1) = Checkpoint(dir, RandomModelKind.Sd15, "sd1");
        var (xl, cx) = Checkpoint(dir, RandomModelKind.Sdxl, "xl");
        string l1 = RandomLoraFor(dir, sd1, c1, "l1", 1), lx = RandomLoraFor(dir, xl, cx, "lx", 1);
        Assert.Contains("made for sdxl", Assert.Throws<LoraFormatException>(() => LoraMergeInto.Run(new MergeIntoRequest(sd1, [new LoraStrength(lx, 1, 1)], dir.File("o.safetensors")))).Message);
        Assert.Contains("different families", Assert.Throws<UserErrorException>(() => LoraMerge.Run(new MergeRequest([new WeightedLora(l1, 1), new WeightedLora(lx, 1)], dir.File("o.safetensors")))).Message);
        Assert.Contains("one family", Assert.Throws<UserErrorException>(() => LoraExtract.Run(new ExtractRequest(sd1, xl, new RankRule(4), dir.File("o.safetensors")))).Message);
        Assert.Contains("one of the inputs", Assert.Throws<UserErrorException>(() => LoraResize.Run(new ResizeRequest(l1, new RankRule(2), l1) { Force = true })).Message);
        Assert.Contains("exists", Assert.Throws<UserErrorException>(() => LoraConvert.Run(new ConvertRequest(l1, LoraNaming.Peft, lx) { Model = sd1 })).Message);
        Assert.False(File.Exists(dir.File("o.safetensors")));
    }
}
