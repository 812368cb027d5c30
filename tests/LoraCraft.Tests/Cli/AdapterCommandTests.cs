using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Pipelines;
using LoraCraft.Runtime;
using LoraCraft.Tests.Conformance;
using LoraCraft.Tests.Lora;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Cli;

/// <summary>The CLI faces of the adapter family: listing and checking every type, `debug unet`, `--lora-mode`.</summary>
public class AdapterCommandTests(ITestOutputHelper output)
{
    static AdapterCommandTests() => TorchNative.Ensure();

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(args, stdout, stderr);
        return (code, stdout.ToString().ReplaceLineEndings("\n"), stderr.ToString());
    }

    /// <summary>A tiny random SD1 checkpoint and its config folder.</summary>
    static (string Model, string Config) TinyModel(TempDir dir)
    {
        var path = dir.File("tiny.safetensors");
        var config = RandomCheckpoint.Make(path, RandomArchitecture.Of(RandomModelKind.Sd15, RandomModelSize.Tiny), seed: 11)!;
        return (path, config);
    }

    [SkippableFact]
    public void ListAndCheckNameTheTypeOfEveryFileAndModule()
    {
        using var dir = new TempDir();
        var (modelPath, config) = TinyModel(dir);
        var folder = Directory.CreateDirectory(dir.File("Lora")).FullName;
        IReadOnlyList<AdapterSamples.Sample> samples;
        using (var model = CheckpointLoader.Load(modelPath, new LoadOptions { ConfigDir = config }))
            samples = AdapterSamples.WriteAll(folder, new LoraTargets(model));

        var (code, text, err) = Run("lora", "list", "--dir", folder);
        output.WriteLine(text);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        foreach (var s in samples)
        {
            string type = s.Algorithm.Id() + (s.Name.Contains("dora", StringComparison.Ordinal) ? "+dora" : "");
            Assert.Matches($@"^{s.Name}\s+\S+\s+{System.Text.RegularExpressions.Regex.Escape(type)}\s", text.Split('\n').Single(l => l.StartsWith(s.Name + " ", StringComparison.Ordinal)));
        }
        Assert.EndsWith($"{samples.Count} LoRA files in {folder}\n", text);

        (code, text, _) = Run("lora", "check", Path.Combine(folder, "loha.safetensors"), "--model", modelPath, "--config", config);
        output.WriteLine(text);
        Assert.Equal(0, code);
        Assert.Contains("(loha, made for sd1)", text);
        Assert.Contains("types     2 loha\n", text);
        Assert.Contains("verdict: OK: all 2 modules map", text);

        (code, text, _) = Run("lora", "check", Path.Combine(folder, "dora.safetensors"), "--model", modelPath, "--config", config, "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(text);
        var modules = doc.RootElement.GetProperty("modules").EnumerateArray().ToList();
        Assert.Equal(["lora", "locon"], modules.Select(m => m.GetProperty("algorithm").GetString()));
        Assert.All(modules, m => Assert.True(m.GetProperty("dora").GetBoolean()));
        Assert.Equal("input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", modules[0].GetProperty("target").GetString());
    }

    [SkippableTheory]
    [InlineData("merge")]
    [InlineData("bypass")]
    public void DebugUNetReproducesTheLycorisCases(string mode)
    {
        var f = Fixture.Require();
        var (cases, expected) = LycorisCases.MoreCases("lora_unet_raw");
        using var _ = expected;
        using var dir = new TempDir();
        foreach (var c in cases)
        {
            var lora = c.GetProperty("loras")[0];
            string input = dir.File("in.safetensors"), outPath = dir.File("out.safetensors");
            using (var sample = expected.Load(c.GetProperty("sample").GetString()!))
            using (var context = expected.Load(c.GetProperty("context").GetString()!))
                SafetensorsWriter.Write(input, [new("sample", sample), new("context", context)]);
            string loraArg = Path.Combine(f.Root, "more", "loras", lora.GetProperty("file").GetString()!) + ":" + lora.GetProperty("unet").GetDouble().ToString(System.Globalization.CultureInfo.InvariantCulture);
            var (code, text, err) = Run("debug", "unet", "--model", f.ModelFile("sd15"), "--config", f.DiffusersDir("sd15"), "--lora", loraArg,
                                        "--inputs", input, "--timestep", c.GetProperty("timestep").GetDouble().ToString(System.Globalization.CultureInfo.InvariantCulture),
                                        "--out", outPath, "--lora-mode", mode);
            Assert.True(code == 0, err);
            Assert.StartsWith(outPath + " (eps [", text);
            using var result = SafetensorsFile.Open(outPath);
            Assert.Equal(SafeDType.F32, result.Tensors.Single(t => t.Name == "eps").DType);
            using var eps = result.Load("eps");
            using var want = expected.Load(c.GetProperty("expected").GetString()!, ScalarType.Float32);
            double errL2 = Fixture.RelL2(eps, want);
            output.WriteLine($"{lora.GetProperty("file").GetString()} {mode}: {errL2:E2}");
            Assert.True(errL2 < 1e-4, $"relative L2 {errL2:E2}");
        }
    }

    [SkippableFact]
    public void DebugUNetRefusesClearly()
    {
        using var dir = new TempDir();
        var (modelPath, config) = TinyModel(dir);
        var input = dir.File("in.safetensors");
        SafetensorsWriter.Write(input, [new("sample", zeros(1, 4, 8, 8))]);
        var (code, _, err) = Run("debug", "unet", "--model", modelPath, "--config", config, "--inputs", input, "--out", dir.File("o.safetensors"));
        Assert.Equal(2, code);
        Assert.Contains("--timestep", err);
        (code, _, err) = Run("debug", "unet", "--model", modelPath, "--config", config, "--inputs", input, "--timestep", "10", "--out", dir.File("o.safetensors"));
        Assert.Equal(2, code);
        Assert.Contains("no tensor 'context'", err);
        (code, _, err) = Run("debug", "nothing");
        Assert.Equal(2, code);
        Assert.Contains("encode, noise or unet", err);
    }

    [SkippableFact]
    public void GenerateTakesAScheduleAndTheModeAndRecordsTheSchedule()
    {
        using var dir = new TempDir();
        var (modelPath, config) = TinyModel(dir);
        var lora = dir.File("style.safetensors");
        using (var model = CheckpointLoader.Load(modelPath, new LoadOptions { ConfigDir = config }))
            RandomLora.Make(lora, new LoraTargets(model), new RandomLoraOptions(Rank: 4, Seed: 2));
        string[] common = ["generate", "--model", modelPath, "--config", config, "--prompt", "a cat", "--steps", "3", "--width", "64", "--height", "64",
                           "--seed", "5", "--quiet", "--lora", lora + ":0@0,1@1", "--dtype", "fp32"];
        var outs = new Dictionary<string, string>();
        foreach (var mode in new[] { "merge", "bypass", "auto" })
        {
            outs[mode] = dir.File(mode + ".png");
            var (code, _, err) = Run([.. common, "--lora-mode", mode, "--out", outs[mode]]);
            Assert.True(code == 0, err);
        }
        using var merged = ImageFiles.LoadRgb(outs["merge"]);
        foreach (var mode in new[] { "bypass", "auto" })
        {
            using var other = ImageFiles.LoadRgb(outs[mode]);
            // float32: the same image within float rounding, at most one 8-bit level anywhere (in bf16
            // merged weights are rounded to bf16, bypass keeps the update apart: bf16-sized differences)
            Assert.True((other - merged).abs().max().item<float>() <= 1 / 255f + 1e-6, mode);
        }
        var parameters = ImageFiles.ReadTextChunks(outs["merge"])[ImageFiles.ParametersKey];
        Assert.Contains("<lora:style:0@0,1@1>", parameters);
        var (bad, _, badErr) = Run([.. common, "--lora-mode", "sideways", "--out", dir.File("x.png")]);
        Assert.Equal(2, bad);
        Assert.Contains("auto, merge or bypass", badErr);
    }
}
