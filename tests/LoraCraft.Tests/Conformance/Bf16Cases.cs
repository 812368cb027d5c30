using System.Collections.Concurrent;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Pipelines;
using LoraCraft.Text;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Conformance;

/// <summary>
/// The bf16 compute path against the float32 reference, on every model and generation case.
/// bf16 keeps 8 significant bits, so forwards land near 1e-2; the bounds catch a broken path
/// (misloaded or mis-cast weights give errors near 1), and the measured figures go to the README.
/// </summary>
public class Bf16Cases(ITestOutputHelper output)
{
    const double ForwardBound = 5e-2, GenerationBound = 0.25;
    static readonly ConcurrentDictionary<string, Lazy<StableDiffusionModel>> Models = new();

    static StableDiffusionModel Model(Fixture f, string kind) => Models.GetOrAdd(kind, k => new(() =>
        CheckpointLoader.Load(f.ModelFile(k), new LoadOptions { ConfigDir = f.DiffusersDir(k), DType = ScalarType.BFloat16 }))).Value;

    [SkippableTheory]
    [InlineData("sd15")]
    [InlineData("sd15-inpaint")]
    [InlineData("sd2v")]
    [InlineData("sdxl")]
    public void ForwardsStayNearTheReference(string kind)
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        var m = Model(f, kind);
        Assert.Equal(ScalarType.BFloat16, m.DType);
        var report = new Fixture.Report(ForwardBound);
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        foreach (var c in f.OfKind("conditioning", kind))
        {
            using var cond = TextConditioner.Encode(m, c.GetProperty("prompt").GetString()!);
            report.Check($"{kind} conditioning", cond.Context, f.Tensor(c, "context"));
        }
        foreach (var c in f.OfKind("unet", kind))
        {
            var eps = f.RunUNet(c, m.UNet);
            report.Check($"{kind} unet t={c.GetProperty("timestep").GetSingle()}", eps, f.Tensor(c, "expected"));
        }
        foreach (var c in f.OfKind("vae_decode", kind))
            report.Check($"{kind} vae decode", m.Vae.Decode(f.Tensor(c, "latent")), f.Tensor(c, "expected"));
        foreach (var c in f.OfKind("vae_encode", kind))
            report.Check($"{kind} vae encode", m.Vae.Encode(f.Tensor(c, "image")).Mean, f.Tensor(c, "mean"));
        report.Assert(output);
    }

    [SkippableFact]
    public void LoraOnBf16WeightsRestoresThemBitForBit()
    {
        var f = Fixture.Require();
        // a private bf16 model: its convolution kernels are stored channels-last
        using var model = CheckpointLoader.Load(f.ModelFile("sd15"), new LoadOptions { ConfigDir = f.DiffusersDir("sd15"), DType = ScalarType.BFloat16 });
        var before = model.UNet.Weights().ToDictionary(w => w.Name, w => w.Weight.T.contiguous().clone());
        using var lora = LoraCraft.Lora.LoraFile.Load(Path.Combine(f.Root, "loras", "sd15-locon.safetensors"));
        var plan = LoraCraft.Lora.LoraPlan.Create(lora, new LoraCraft.Lora.LoraTargets(model));
        Assert.Contains(plan.Matched, m => m.Target.Weight.Shape.Length == 4);
        using (var patcher = new LoraCraft.Lora.LoraPatcher())
        {
            Assert.True(patcher.Apply([new LoraCraft.Lora.LoraApplication(plan, 1, 1)]) > 0);
            Assert.Contains(model.UNet.Weights(), w => !(w.Weight.T.contiguous() == before[w.Name]).all().item<bool>());
            patcher.Apply([]);
        }
        foreach (var (name, w) in model.UNet.Weights())
            Assert.True((w.T.contiguous() == before[name]).all().item<bool>(), $"{name} not restored");
    }

    public static TheoryData<int> PlainCases() => PipelineCases.CaseIndices(withLoras: false);

    [SkippableTheory, MemberData(nameof(PlainCases))]
    public void GenerationsStayNearTheReference(int index)
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        var c = f.Cases[index];
        string kind = c.GetProperty("model").GetString()!;
        using var result = StableDiffusionPipeline.Generate(Model(f, kind), PipelineCases.Request(f, c));
        double latent = Fixture.RelL2(result.Latent, f.Tensor(c, "latent"));
        using var diff = (result.Image - f.Tensor(c, "image")).abs();
        output.WriteLine($"#{index} {c.GetProperty("kind").GetString()} {kind} {c.GetProperty("sampler").GetString()}: latent rel L2 {latent:E2}, " +
                         $"image mean |diff| {diff.mean().item<float>() * 255:F2}/255, max {diff.max().item<float>() * 255:F1}/255");
        Assert.True(latent < GenerationBound, $"bf16 latent relative L2 {latent:E2}");
    }
}
