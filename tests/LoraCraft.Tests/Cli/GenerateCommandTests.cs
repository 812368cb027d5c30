using LoraCraft.IO;
using LoraCraft.Pipelines;
using LoraCraft.Tests.Conformance;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Cli;

/// <summary>The `generate` command end to end, on the tiny fixture model: same numbers as the reference.</summary>
public class GenerateCommandTests(ITestOutputHelper output)
{
    static (int Code, string Out, string Err) Run(params string[] args) // runs `generate ARGS`
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(["generate", .. args], o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>The reference is float32; the CLI's default (auto) would pick bf16 on CPUs that have it.</summary>
    static string[] ModelArgs(Fixture f, string kind = "sd15") => ["--model", f.ModelFile(kind), "--config", f.DiffusersDir(kind), "--dtype", "fp32"];

    /// <summary>The command line that reproduces a fixture case.</summary>
    static string[] CaseArgs(Fixture f, int index, string outPng, string latent)
    {
        var c = f.Cases[index];
        var args = new List<string>(ModelArgs(f, c.GetProperty("model").GetString()!))
        {
            "--prompt", c.GetProperty("prompt").GetString()!, "--negative", c.GetProperty("negative").GetString()!,
            "--seed", c.GetProperty("seed").GetInt64().ToString(), "--steps", c.GetProperty("steps").GetInt32().ToString(),
            "--cfg", c.GetProperty("cfg").GetDouble().ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--sampler", c.GetProperty("sampler").GetString()!, "--scheduler", c.GetProperty("scheduler").GetString()!,
            "--width", c.GetProperty("width").GetInt32().ToString(), "--height", c.GetProperty("height").GetInt32().ToString(),
            "--clip-skip", c.GetProperty("clip_skip").GetInt32().ToString(),
            "--out", outPng, "--save-latent", latent, "--quiet",
        };
        if (c.TryGetProperty("init_png", out var init))
        {
            args.AddRange(["--init-image", Path.Combine(f.Root, init.GetString()!)]);
            if (c.TryGetProperty("denoise", out var d) && d.ValueKind == System.Text.Json.JsonValueKind.Number)
                args.AddRange(["--denoise", d.GetDouble().ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        }
        if (c.TryGetProperty("mask_png", out var mask)) args.AddRange(["--mask", Path.Combine(f.Root, mask.GetString()!)]);
        return args.ToArray();
    }

    static Tensor ReadLatent(string path)
    {
        using var file = SafetensorsFile.Open(path);
        return file.Load("latent", ScalarType.Float32);
    }

    [SkippableTheory]
    [InlineData(14)] // txt2img euler
    [InlineData(27)] // img2img denoise 0.8
    [InlineData(29)] // inpaint with a noise mask
    [InlineData(58)] // 9-channel inpainting model
    [InlineData(93)] // sdxl
    public void ReproducesReferenceCase(int index)
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var dir = new TempDir();
        var (code, _, err) = Run(CaseArgs(f, index, dir.File("out.png"), dir.File("latent.safetensors")));
        Assert.True(code == 0, err);
        var c = f.Cases[index];
        using var latent = ReadLatent(dir.File("latent.safetensors"));
        double e = Fixture.RelL2(latent, f.Tensor(c, "latent"));
        output.WriteLine($"case {index}: latent rel L2 {e:E2}");
        Assert.True(e < 1e-3, $"latent relative L2 {e:E3}");
        // the PNG holds the reference image to within 2/255 (8-bit truncation as the reference tools)
        using var png = ImageFiles.LoadRgb(dir.File("out.png"));
        using var expected = f.Tensor(c, "image");
        double maxErr = (png - expected).abs().max().item<float>() * 255;
        Assert.True(maxErr <= 2.0 + 1e-3, $"PNG differs by {maxErr:F2}/255");
    }

    [SkippableFact]
    public void FromPngReproducesTheSameLatent()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var dir = new TempDir();
        var first = Run(CaseArgs(f, 15, dir.File("a.png"), dir.File("a.safetensors")));
        Assert.True(first.Code == 0, first.Err);
        var second = Run([.. ModelArgs(f), "--from-png", dir.File("a.png"), "--out", dir.File("b.png"), "--save-latent", dir.File("b.safetensors"), "--quiet"]);
        Assert.True(second.Code == 0, second.Err);
        using var a = ReadLatent(dir.File("a.safetensors"));
        using var b = ReadLatent(dir.File("b.safetensors"));
        Assert.True((a == b).all().item<bool>(), "the rerun latent differs");
        Assert.Equal(File.ReadAllBytes(dir.File("a.png")), File.ReadAllBytes(dir.File("b.png")));
        var parameters = GenerationParameters.Parse(ImageFiles.ReadTextChunks(dir.File("a.png"))[ImageFiles.ParametersKey]);
        Assert.Equal("7", parameters.Get("Seed"));
        Assert.Equal("64x64", parameters.Get("Size"));
    }

    [SkippableFact]
    public void BatchUsesConsecutiveSeeds()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var dir = new TempDir();
        var r = Run([.. ModelArgs(f), "--prompt", "a cat", "--seed", "100", "--steps", "2", "--width", "64", "--height", "64",
                     "--batch-count", "2", "--out", dir.File("x.png"), "--quiet"]);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("seed 100", r.Out);
        Assert.Contains("seed 101", r.Out);
        Assert.Equal("101", GenerationParameters.Parse(ImageFiles.ReadTextChunks(dir.File("x-2.png"))[ImageFiles.ParametersKey]).Get("Seed"));
    }

    [SkippableFact]
    public void PromptTagAppliesLoraAndReruns()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        var c = f.Cases[42];
        Assert.Equal("heart shaped cloud in a blue sky <lora:sd15-attn:0.7>", c.GetProperty("prompt_with_tag").GetString());
        using var dir = new TempDir();
        var args = CaseArgs(f, 42, dir.File("a.png"), dir.File("a.safetensors")).ToList();
        args[args.IndexOf("--prompt") + 1] = c.GetProperty("prompt_with_tag").GetString()!;
        args.AddRange(["--lora-dir", Path.Combine(f.Root, "loras")]);
        var r = Run([.. args]);
        Assert.True(r.Code == 0, r.Err);
        using (var latent = ReadLatent(dir.File("a.safetensors")))
            Assert.True(Fixture.RelL2(latent, f.Tensor(c, "latent")) < 1e-3);
        var parameters = GenerationParameters.Parse(ImageFiles.ReadTextChunks(dir.File("a.png"))[ImageFiles.ParametersKey]);
        Assert.Equal(c.GetProperty("prompt_with_tag").GetString(), parameters.Prompt);
        string hash = FileHashes.Default.LoraHash(Path.Combine(f.Root, "loras", "sd15-attn.safetensors"));
        Assert.Equal($"sd15-attn: {hash}", parameters.Get("Lora hashes"));

        // the same LoRA under another name is found by its hash
        Directory.CreateDirectory(dir.File("renamed"));
        File.Copy(Path.Combine(f.Root, "loras", "sd15-attn.safetensors"), dir.File("renamed/my-style-v2.safetensors"));
        var rerun = Run([.. ModelArgs(f), "--from-png", dir.File("a.png"), "--lora-dir", dir.File("renamed"),
                         "--out", dir.File("b.png"), "--save-latent", dir.File("b.safetensors"), "--quiet"]);
        Assert.True(rerun.Code == 0, rerun.Err);
        using var a = ReadLatent(dir.File("a.safetensors"));
        using var b = ReadLatent(dir.File("b.safetensors"));
        Assert.True((a == b).all().item<bool>());
    }

    [SkippableFact]
    public void LoraOptionsMatchTheCombinedCase()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var dir = new TempDir();
        string loras = Path.Combine(f.Root, "loras");
        var r = Run([.. CaseArgs(f, 41, dir.File("a.png"), dir.File("a.safetensors")),
                     "--lora", Path.Combine(loras, "sd15-attn.safetensors") + ":0.6", "--lora-dir", loras, "--lora", "sd15-locon:0.4:0.4"]);
        Assert.True(r.Code == 0, r.Err);
        using var latent = ReadLatent(dir.File("a.safetensors"));
        Assert.True(Fixture.RelL2(latent, f.Tensor(f.Cases[41], "latent")) < 1e-3);
        var parameters = GenerationParameters.Parse(ImageFiles.ReadTextChunks(dir.File("a.png"))[ImageFiles.ParametersKey]);
        Assert.EndsWith("<lora:sd15-attn:0.6> <lora:sd15-locon:0.4>", parameters.Prompt);
    }

    [SkippableFact]
    public void UnknownLoraNameSuggestsClosest()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var dir = new TempDir();
        var r = Run([.. ModelArgs(f), "--prompt", "x <lora:sd15-atn:1>", "--lora-dir", Path.Combine(f.Root, "loras"), "--out", dir.File("o.png")]);
        Assert.Equal(2, r.Code);
        Assert.Contains("closest: sd15-attn", r.Err);
    }

    [SkippableFact]
    public void Sd1LoraOnSdxlFailsClearly()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var dir = new TempDir();
        var r = Run([.. ModelArgs(f, "sdxl"), "--prompt", "x", "--lora", Path.Combine(f.Root, "loras", "sd15-attn.safetensors"), "--width", "64", "--height", "64", "--out", dir.File("o.png")]);
        Assert.Equal(2, r.Code);
        Assert.Contains("looks made for sd1", r.Err);
        Assert.False(File.Exists(dir.File("o.png")));
    }

    [SkippableFact]
    public void InpaintCropKeepsPixelsOutsideTheMask()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var dir = new TempDir();
        using var image = ImageFiles.LoadRgb(Path.Combine(f.Root, "images", "init.png"), 200, 120);
        ImageFiles.SavePng(dir.File("in.png"), image);
        using var mask = torch.zeros(1, 3, 120, 200);
        mask[.., .., 40..70, 90..130] = torch.tensor(1f);
        ImageFiles.SavePng(dir.File("mask.png"), mask);
        var r = Run([.. ModelArgs(f), "--prompt", "a red ball", "--seed", "3", "--steps", "2", "--init-image", dir.File("in.png"),
                     "--mask", dir.File("mask.png"), "--inpaint-crop", "--crop-size", "64", "--crop-context", "8", "--out", dir.File("out.png"), "--quiet"]);
        Assert.True(r.Code == 0, r.Err);
        var before = ImageFiles.ToRgbBytes(ImageFiles.LoadRgb(dir.File("in.png")));
        using var outImage = ImageFiles.LoadRgb(dir.File("out.png"));
        Assert.Equal(new long[] { 1, 3, 120, 200 }, outImage.shape);
        var after = ImageFiles.ToRgbBytes(outImage);
        // the left third is far from the mask and its feather: byte-identical
        for (int y = 0; y < 120; y++)
            for (int x = 0; x < 40; x++)
                for (int ch = 0; ch < 3; ch++)
                    Assert.Equal(before[(y * 200 + x) * 3 + ch], after[(y * 200 + x) * 3 + ch]);
        Assert.NotEqual(before, after);
    }

    [SkippableFact]
    public void UnmatchedLoraKeysAreReportedEvenWhenQuiet()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        var lora = dir.File("extra.safetensors");
        LoraCraft.Tests.Models.CheckpointRewrite.Write(Path.Combine(f.Root, "loras", "sd15-attn.safetensors"), lora, (_, t) => t,
            ("lora_unet_no_such_block_proj.lora_down.weight", torch.zeros(4, 32)), ("lora_unet_no_such_block_proj.lora_up.weight", torch.zeros(32, 4)));
        var r = Run([.. ModelArgs(f), "--prompt", "x", "--steps", "1", "--width", "64", "--height", "64", "--lora", lora, "--out", dir.File("o.png"), "--quiet"]);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("warning: LoRA extra: 1 keys match no layer of this model (e.g. lora_unet_no_such_block_proj)", r.Err);
    }

    [SkippableFact]
    public void CancellingStopsWithoutWritingAnything()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        using var cts = new CancellationTokenSource();
        cts.Cancel(); // as Ctrl-C does, before the first step completes
        Assert.ThrowsAny<OperationCanceledException>(() => LoraCraft.Cli.Commands.GenerateCommand.Run(
            [.. ModelArgs(f), "--prompt", "x", "--steps", "3", "--width", "64", "--height", "64", "--out", dir.File("o.png"),
             "--save-latent", dir.File("o.safetensors"), "--quiet"], new StringWriter(), new StringWriter(), cts.Token));
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    public static TheoryData<string[], string> BadInputs() => new()
    {
        { ["--width", "63"], "multiple of 8" },
        { ["--steps", "-1"], "steps" },
        { ["--sampler", "warp_drive"], "unknown sampler" },
        { ["--scheduler", "sideways"], "unknown schedule" },
        { ["--denoise", "1.5"], "denoise" },
        { ["--mask", "MASK"], "a mask needs an init image" },
        { ["--seed", "-5"], "seed must be -1 (random) or 0 to 18446744073709551615" },
        { ["--seed", "18446744073709551616"], "seed must be an integer" },
        { ["--width", "16392"], "at most 16384" },
        { ["--memory-limit", "lots"], "--memory-limit" },
        { ["--bogus"], "unknown option" },
    };

    [SkippableTheory, MemberData(nameof(BadInputs))]
    public void BadInputIsOneLineAndExitCode2(string[] extra, string expected)
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var dir = new TempDir();
        var resolved = extra.Select(x => x switch
        {
            "MASK" => Path.Combine(f.Root, "images", "mask.png"),
            "INIT" => Path.Combine(f.Root, "images", "init.png"),
            _ => x,
        });
        var r = Run([.. ModelArgs(f), "--prompt", "x", "--out", dir.File("o.png"), .. resolved]);
        Assert.Equal(2, r.Code);
        Assert.Single(r.Err.TrimEnd('\n').Split('\n'), l => l.StartsWith("error:"));
        Assert.Contains(expected, r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.False(File.Exists(dir.File("o.png")));
    }

    [SkippableFact]
    public void MissingModelIsOneLine()
    {
        using var dir = new TempDir();
        var r = Run(["--model", dir.File("none.safetensors"), "--prompt", "x", "--out", dir.File("o.png")]);
        Assert.Equal(2, r.Code);
        Assert.Contains("not found", r.Err);
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    static string RecordedSeed(string png) => GenerationParameters.Parse(ImageFiles.ReadTextChunks(png)[ImageFiles.ParametersKey]).Get("Seed")!;

    [SkippableFact]
    public void SeedMinusOneDrawsARandomSeedThatIsPrintedAndRecorded()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        var seeds = new List<string>();
        foreach (var name in new[] { "a.png", "b.png" })
        {
            var r = Run([.. ModelArgs(f), "--prompt", "x", "--steps", "1", "--width", "64", "--height", "64", "--seed", "-1", "--out", dir.File(name), "--quiet"]);
            Assert.Equal(0, r.Code);
            string recorded = RecordedSeed(dir.File(name));
            Assert.Contains($"(seed {recorded})", r.Out);
            Assert.True(ulong.Parse(recorded) < uint.MaxValue, $"recorded seed {recorded}");
            seeds.Add(recorded);
        }
        Assert.NotEqual(seeds[0], seeds[1]);
    }

    [SkippableFact]
    public void SeedsUpTo2To64Minus1AreValidAndABatchWrapsAround()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        var r = Run([.. ModelArgs(f), "--prompt", "x", "--steps", "1", "--width", "64", "--height", "64", "--seed", ulong.MaxValue.ToString(),
                     "--batch-count", "2", "--out", dir.File("o.png"), "--quiet"]);
        Assert.Equal(0, r.Code);
        Assert.Equal(ulong.MaxValue.ToString(), RecordedSeed(dir.File("o-1.png")));
        Assert.Equal("0", RecordedSeed(dir.File("o-2.png")));
    }

    [SkippableFact]
    public void Img2ImgTakesTheImageSizeAndResizesWhenTold()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        using (var odd = torch.rand(1, 3, 76, 100)) ImageFiles.SavePng(dir.File("odd.png"), odd);
        using (var mask = torch.ones(1, 1, 30, 30)) ImageFiles.SavePng(dir.File("mask.png"), mask.expand(1, 3, 30, 30));
        var r = Run([.. ModelArgs(f), "--prompt", "x", "--steps", "1", "--init-image", dir.File("odd.png"), "--out", dir.File("a.png"), "--quiet"]);
        Assert.Equal(0, r.Code);
        Assert.Equal((96, 72), ImageFiles.Size(dir.File("a.png")));
        Assert.Contains("init image 100x76 resized to 96x72 (rounded down to multiples of 8)", r.Err);
        r = Run([.. ModelArgs(f), "--prompt", "x", "--steps", "1", "--init-image", dir.File("odd.png"), "--width", "64", "--height", "64",
                 "--mask", dir.File("mask.png"), "--out", dir.File("b.png"), "--quiet"]);
        Assert.Equal(0, r.Code);
        Assert.Equal((64, 64), ImageFiles.Size(dir.File("b.png")));
        Assert.Contains("init image 100x76 resized to 64x64 (A1111's \"just resize\"; its aspect ratio changes)", r.Err);
        Assert.Contains("mask 30x30 resized to 64x64", r.Err);
        r = Run([.. ModelArgs(f), "--prompt", "x", "--steps", "1", "--init-image", dir.File("odd.png"), "--width", "48", "--out", dir.File("c.png"), "--quiet"]);
        Assert.Equal(0, r.Code);
        Assert.Equal((48, 40), ImageFiles.Size(dir.File("c.png"))); // 76 * 48 / 100 = 36.5 -> 40
    }

    [SkippableFact]
    public void ASizeThatCannotFitIsRefusedOrTiledBeforeAnyWork()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        var r = Run([.. ModelArgs(f), "--prompt", "x", "--steps", "1", "--width", "512", "--height", "512", "--memory-limit", "100M", "--out", dir.File("a.png")]);
        Assert.Equal(2, r.Code);
        Assert.Matches(@"error: 512x512 needs about 0\.\d GB of memory beyond the model, 0\.1 GB is available", r.Err);
        Assert.Empty(Directory.GetFiles(dir.Path));
        r = Run([.. ModelArgs(f), "--prompt", "x", "--steps", "1", "--width", "768", "--height", "768", "--memory-limit", "500M", "--out", dir.File("b.png"), "--quiet"]);
        Assert.Equal(0, r.Code);
        Assert.Contains("note: VAE tiling turned on: decoding 768x768 whole needs about 0.6 GB, 0.5 GB is available", r.Err);
    }
}
