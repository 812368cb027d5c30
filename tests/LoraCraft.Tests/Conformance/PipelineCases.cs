using System.Text.Json;
using LoraCraft.Pipelines;
using LoraCraft.Sampling;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Conformance;

/// <summary>Full generations (txt2img, img2img, inpainting) without LoRAs against the reference latents and images.</summary>
public class PipelineCases(ITestOutputHelper output)
{
    public static TheoryData<int> CaseIndices(bool withLoras)
    {
        var data = new TheoryData<int>();
        if (Fixture.Instance is not { } f) { data.Add(-1); return data; }
        for (int i = 0; i < f.Cases.Count; i++)
        {
            var c = f.Cases[i];
            string kind = c.GetProperty("kind").GetString()!;
            if (kind is not ("txt2img" or "img2img" or "inpaint_noise_mask" or "inpaint_model")) continue;
            bool hasLoras = c.GetProperty("loras").GetArrayLength() > 0;
            if (hasLoras == withLoras) data.Add(i);
        }
        return data;
    }

    public static TheoryData<int> PlainCases() => CaseIndices(false);

    public static GenerationRequest Request(Fixture f, JsonElement c)
    {
        int width = c.GetProperty("width").GetInt32(), height = c.GetProperty("height").GetInt32();
        return new GenerationRequest
        {
            Prompt = c.GetProperty("prompt").GetString()!,
            Negative = c.GetProperty("negative").GetString()!,
            Seed = c.GetProperty("seed").GetUInt64(),
            Steps = c.GetProperty("steps").GetInt32(),
            Cfg = c.GetProperty("cfg").GetDouble(),
            Sampler = c.GetProperty("sampler").GetString()!,
            Scheduler = c.GetProperty("scheduler").GetString()!,
            Width = width,
            Height = height,
            ClipSkip = c.GetProperty("clip_skip").GetInt32(),
            Denoise = c.TryGetProperty("denoise", out var d) && d.ValueKind == JsonValueKind.Number ? d.GetDouble() : 1,
            InitImage = c.TryGetProperty("init_png", out var ip) ? ImageFiles.LoadRgb(Path.Combine(f.Root, ip.GetString()!), width, height) : null,
            Mask = c.TryGetProperty("mask_png", out var mp) ? ImageFiles.LoadMask(Path.Combine(f.Root, mp.GetString()!), width, height) : null,
        };
    }

    internal static void CheckResult(Fixture f, JsonElement c, GenerationResult result, ITestOutputHelper output, string name)
    {
        var expectedSigmas = c.GetProperty("sigmas").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        Assert.Equal(expectedSigmas, result.Sigmas);
        var expectedLatent = f.Tensor(c, "latent");
        double err = Fixture.RelL2(result.Latent, expectedLatent);
        var expectedImage = f.Tensor(c, "image");
        // per-pixel error where the reference is not saturated (clamping hides differences there)
        using var unsaturated = (expectedImage > 1e-3).logical_and(expectedImage < 1 - 1e-3);
        using var diff = (result.Image - expectedImage).abs() * unsaturated;
        double maxPixel = diff.max().item<float>() * 255;
        output.WriteLine($"{name}: latent rel L2 {err:E2}, max pixel error {maxPixel:F3}/255");
        Assert.True(err < 1e-3, $"{name}: latent relative L2 {err:E3} >= 1e-3");
        Assert.True(maxPixel <= 2, $"{name}: image differs by {maxPixel:F2}/255 (> 2)");
    }

    [SkippableTheory, MemberData(nameof(PlainCases))]
    public void Generates(int index)
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        var c = f.Cases[index];
        string kind = c.GetProperty("model").GetString()!;
        var model = ModelCases.Model(kind, diffusers: false);
        var request = Request(f, c);
        using var result = StableDiffusionPipeline.Generate(model, request);
        CheckResult(f, c, result, output, $"#{index} {c.GetProperty("kind").GetString()} {kind} {request.Sampler}/{request.Scheduler}");
    }

    [SkippableFact]
    public void InpaintModelConcatMatchesReference()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        var c = f.OfKind("inpaint_model").First();
        var model = ModelCases.Model("sd15-inpaint", diffusers: false);
        var request = Request(f, c);
        using var scope = NewDisposeScope();
        var concat = InpaintConcat.Prepare(model, request.InitImage!, request.Mask!, 8, 8);
        var expected = f.Tensor(c, "concat");
        var ours = torch.cat([concat.Mask, concat.MaskedLatent], 1);
        double err = Fixture.RelL2(ours, expected);
        output.WriteLine($"concat rel L2 {err:E2}");
        Assert.True(err < 1e-4, $"concat relative L2 {err:E3}");
    }
}
