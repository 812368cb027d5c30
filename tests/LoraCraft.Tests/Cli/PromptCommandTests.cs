using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Pipelines;
using LoraCraft.Tests.Conformance;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Cli;

/// <summary>The commands checks rely on: prompt schedule/and, debug encode/noise, embeddings list; and the seed article's prompt end to end.</summary>
public class PromptCommandTests
{
    const string Article = "painting, martius_storm red ominous war [:style of vincent van gogh and leonardo da vinci:0.4] <lora:ral-dissolve:1> ral-dissolve";

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void ScheduleJsonIsA1111sList()
    {
        var (code, stdout, _) = Run("prompt", "schedule", "--steps", "10", "--json", "--", "a [cat:dog:0.4] in a field");
        Assert.Equal(0, code);
        Assert.Equal("[[4,\"a cat in a field\"],[10,\"a dog in a field\"]]", stdout.Trim());
        var (c2, old, _) = Run("prompt", "schedule", "--steps", "10", "--old-scheduling", "--json", "[a:b:1.5]");
        Assert.Equal(0, c2);
        Assert.Equal("[[1,\"a\"],[10,\"b\"]]", old.Trim());
        var (c3, text, _) = Run("prompt", "schedule", "--steps", "10", Article);
        Assert.Equal(0, c3);
        Assert.Contains("steps 1-4: painting, martius_storm red ominous war  <lora:ral-dissolve:1> ral-dissolve", text);
        Assert.Contains("steps 5-10: painting, martius_storm red ominous war style of vincent van gogh and leonardo da vinci <lora:ral-dissolve:1> ral-dissolve", text);
    }

    [Fact]
    public void AndJsonIsTextAndWeight()
    {
        var (code, stdout, _) = Run("prompt", "and", "--json", "a cat :1.2 AND a dog :0.8");
        Assert.Equal(0, code);
        var parts = JsonDocument.Parse(stdout).RootElement.EnumerateArray().Select(e => (e[0].GetString(), e[1].GetDouble())).ToList();
        Assert.Equal([("a cat", 1.2), (" a dog", 0.8)], parts);
    }

    [Fact]
    public void AnInfiniteStepIsAUserError()
    {
        var (code, _, stderr) = Run("prompt", "schedule", "--steps", "10", "[a:b:1e999]");
        Assert.Equal(2, code);
        Assert.Contains("1e999", stderr);
        Assert.Equal(2, Run("prompt", "schedule", "a").Code); // no --steps
    }

    [SkippableFact]
    public void DebugNoiseWritesSuccessivePhiloxDraws()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        string outPath = dir.File("noise.safetensors");
        var (code, _, stderr) = Run("debug", "noise", "--seed", "42", "--shape", "1,4,64,64", "--noise", "nv", "--draws", "3", "--out", outPath);
        Assert.True(code == 0, stderr);
        using var ours = SafetensorsFile.Open(outPath);
        using var expected = SafetensorsFile.Open(Path.Combine(f.Root, "more", "philox-randn.safetensors"));
        for (int k = 0; k < 3; k++)
        {
            using var a = ours.Load($"noise.{k}");
            using var b = expected.Load($"s42.{k}", ScalarType.Float32);
            Assert.True(A1111ConditioningCases.Same(a, b), $"draw {k}");
        }
        // the largest seed A1111 takes
        Assert.Equal(0, Run("debug", "noise", "--seed", "18446744073709551615", "--shape", "1,4,8,8", "--noise", "nv", "--out", outPath).Code);
        using (var big = SafetensorsFile.Open(outPath))
        using (var a = big.Load("noise.0"))
        using (var b = expected.Load("shuge.0", ScalarType.Float32))
            Assert.True(A1111ConditioningCases.Same(a, b));
        Assert.Equal(0, Run("debug", "noise", "--seed", "7", "--shape", "2,3", "--out", outPath).Code); // cpu
        using var cpu = SafetensorsFile.Open(outPath);
        using var g = new Generator(7);
        using var want = randn([2, 3], generator: g);
        using var got = cpu.Load("noise.0");
        Assert.True(A1111ConditioningCases.Same(want, got));
    }

    [SkippableFact]
    public void DebugEncodeWritesA1111sContext()
    {
        var f = Fixture.Require();
        string more = A1111ConditioningCases.More();
        using var dir = new TempDir();
        string outPath = dir.File("ctx.safetensors");
        var (code, _, stderr) = Run("debug", "encode", "--model", f.ModelFile("sd15"), "--config", f.DiffusersDir("sd15"),
                                    "--embeddings-dir", Path.Combine(more, "embeddings"), "--prompt", "(tinyemb:1.3) portrait, [soft light]", "--out", outPath);
        Assert.True(code == 0, stderr);
        using var ours = SafetensorsFile.Open(outPath);
        using var expected = SafetensorsFile.Open(Path.Combine(more, "expected-m2.safetensors"));
        using var got = ours.Load("context");
        using var want = expected.Load("a1111.7.context", ScalarType.Float32);
        Assert.True(Fixture.RelL2(got, want) < 1e-4);
        // SDXL adds pooled; comfy style and clip skip are accepted
        Assert.Equal(0, Run("debug", "encode", "--model", f.ModelFile("sdxl"), "--config", f.DiffusersDir("sdxl"), "--prompt-style", "comfy", "--clip-skip", "2",
                            "--prompt", "a (cat:1.2) BREAK dog", "--out", outPath).Code);
        using var xl = SafetensorsFile.Open(outPath);
        Assert.Equal([1L, 77, 64], xl.Info("context").Shape);
        Assert.Equal(2, xl.Info("pooled").Shape.Length);
    }

    [SkippableFact]
    public void EmbeddingsListShowsTheLibrary()
    {
        string more = A1111ConditioningCases.More();
        var (code, stdout, _) = Run("embeddings", "list", "--dir", Path.Combine(more, "embeddings"), "--json");
        Assert.Equal(0, code);
        var e = Assert.Single(JsonDocument.Parse(stdout).RootElement.EnumerateArray().ToList());
        Assert.Equal(("tinyemb", 2, 32), (e.GetProperty("name").GetString(), e.GetProperty("vectors").GetInt32(), e.GetProperty("shape").GetInt32()));
        var (c2, table, _) = Run("embeddings", "list", "--dir", Path.Combine(more, "embeddings"));
        Assert.Equal(0, c2);
        Assert.Contains("tinyemb", table);
        Assert.Equal(2, Run("embeddings", "list", "--dir", "/nonexistent/embeddings").Code);
    }

    [SkippableFact]
    public void TheSeedArticlesPromptRunsWithItsLora()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("Lora"));
        File.Copy(Path.Combine(f.Root, "loras", "sd15-attn.safetensors"), dir.File("Lora/ral-dissolve.safetensors"));
        string png = dir.File("article.png"), latent = dir.File("article.safetensors");
        var (code, stdout, stderr) = Run("generate", "--model", f.ModelFile("sd15"), "--config", f.DiffusersDir("sd15"), "--dtype", "fp32",
                                         "--prompt", Article, "--negative", "blurry", "--lora-dir", dir.File("Lora"), "--embeddings-dir", dir.File("none"),
                                         "--steps", "5", "--width", "64", "--height", "64", "--seed", "1", "--sampler", "Euler a", "--out", png, "--save-latent", latent);
        Assert.True(code == 0, stderr);
        Assert.Contains("LoRA ral-dissolve", stderr);
        Assert.Contains("from step 3", stderr); // [:...:0.4] of 5 steps: added after step 2
        Assert.Contains("article.png", stdout);
        var parameters = ImageFiles.ReadTextChunks(png)[ImageFiles.ParametersKey];
        Assert.Contains("[:style of vincent van gogh and leonardo da vinci:0.4]", parameters);
        Assert.Contains("Lora hashes", parameters);

        // the same request without the LoRA gives another picture: the tag really applied it
        string plain = dir.File("plain.png"), plainLatent = dir.File("plain.safetensors");
        Assert.Equal(0, Run("generate", "--model", f.ModelFile("sd15"), "--config", f.DiffusersDir("sd15"), "--dtype", "fp32",
                            "--prompt", Article.Replace("<lora:ral-dissolve:1> ", ""), "--negative", "blurry", "--embeddings-dir", dir.File("none"),
                            "--steps", "5", "--width", "64", "--height", "64", "--seed", "1", "--sampler", "Euler a", "--out", plain, "--save-latent", plainLatent, "--quiet").Code);
        using var a = SafetensorsFile.Open(latent);
        using var b = SafetensorsFile.Open(plainLatent);
        using var la = a.Load("latent");
        using var lb = b.Load("latent");
        Assert.True(Fixture.RelL2(la, lb) > 1e-4);
    }

    [SkippableFact]
    public void GenerateTakesTheNoiseAndPromptStyleOptions()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        string png = dir.File("nv.png");
        var (code, _, stderr) = Run("generate", "--model", f.ModelFile("sd15"), "--config", f.DiffusersDir("sd15"), "--dtype", "fp32", "--quiet",
                                    "--prompt", "a (cat:1.2)", "--prompt-style", "comfy", "--noise", "nv", "--subseed", "3", "--subseed-strength", "0.25",
                                    "--steps", "2", "--width", "64", "--height", "64", "--seed", "1", "--out", png);
        Assert.True(code == 0, stderr);
        var p = GenerationParameters.Parse(ImageFiles.ReadTextChunks(png)[ImageFiles.ParametersKey]);
        Assert.Equal("NV", p.Get("RNG"));
        Assert.Equal("3", p.Get("Variation seed"));
        Assert.Equal("0.25", p.Get("Variation seed strength"));
        var back = p.ApplyTo(new GenerationRequest());
        Assert.Equal((LoraCraft.Sampling.RandomSource.Nv, LoraCraft.Sampling.NoiseConvention.A1111, 3UL, 0.25),
                     (back.Noise, back.NoiseConvention, back.Subseed, back.SubseedStrength));
        Assert.Equal(2, Run("generate", "--model", f.ModelFile("sd15"), "--prompt", "x", "--noise", "gpu", "--out", png).Code);
    }
}
