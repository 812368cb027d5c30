using System.Text.Json;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Tests.Conformance;
using LoraCraft.Text;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>
/// Switching LoRAs on one model (A = sd15-attn, B = sd15-locon) must leave it exactly as if the
/// new set had been applied once to a fresh load. Every model here is a private load: patching
/// mutates weights, so the shared cached models are never used.
/// </summary>
public class LoraSwitchTests(ITestOutputHelper output)
{
    const string Prompt = "a watercolor painting of a lighthouse";

    static StableDiffusionModel FreshModel(Fixture f, string kind) =>
        CheckpointLoader.Load(f.ModelFile(kind), new LoadOptions { ConfigDir = f.DiffusersDir(kind) });

    static LoraPlan Plan(Fixture f, string name, LoraTargets targets) =>
        LoraPlan.Create(LoraFile.Load(Path.Combine(f.Root, "loras", name + ".safetensors")), targets);

    /// <summary>A UNet forward on a lora_unet case's inputs and one prompt's conditioning.</summary>
    static (Tensor Eps, Tensor Context) Outputs(Fixture f, StableDiffusionModel model)
    {
        using var noGrad = torch.no_grad();
        JsonElement c = f.OfKind("lora_unet", "sd15").First();
        using var sample = f.Tensor(c, "sample");
        using var context = f.Tensor(c, "context");
        using var t = tensor(new[] { c.GetProperty("timestep").GetSingle() });
        var eps = model.UNet.Forward(sample, t, context);
        using var cond = TextConditioner.Encode(model, Prompt);
        return (eps, cond.Context.clone());
    }

    /// <summary>(LoRA name, unet, te) per stage.</summary>
    static readonly (string Name, double UNet, double Te)[][] Stages =
    [
        [("sd15-attn", 0.8, 0.6)],
        [("sd15-attn", 0.8, 0.6), ("sd15-locon", 0.5, 1.2)],
        [("sd15-locon", 0.5, 1.2)],
        [],
    ];

    [SkippableFact]
    public void EachStageEqualsTheSameSetAppliedOnceToAFreshModel()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var model = FreshModel(f, "sd15");
        var targets = new LoraTargets(model);
        var plans = new[] { "sd15-attn", "sd15-locon" }.ToDictionary(n => n, n => Plan(f, n, targets));
        var (plainEps, plainContext) = Outputs(f, model);
        using var patcher = new LoraPatcher();
        foreach (var stage in Stages)
        {
            string name = stage.Length == 0 ? "none" : string.Join(" + ", stage.Select(s => $"{s.Name} u{s.UNet} te{s.Te}"));
            patcher.Apply(stage.Select(s => new LoraApplication(plans[s.Name], s.UNet, s.Te)).ToList());
            var (eps, context) = Outputs(f, model);

            using var fresh = FreshModel(f, "sd15");
            var freshTargets = new LoraTargets(fresh);
            using var once = new LoraPatcher();
            once.Apply(stage.Select(s => new LoraApplication(Plan(f, s.Name, freshTargets), s.UNet, s.Te)).ToList());
            var (expectedEps, expectedContext) = Outputs(f, fresh);

            double epsError = Fixture.RelL2(eps, expectedEps), contextError = Fixture.RelL2(context, expectedContext);
            output.WriteLine($"{name}: UNet rel {epsError:E2} (bitwise {eps.bytes.SequenceEqual(expectedEps.bytes)}), conditioning rel {contextError:E2}");
            Assert.True(epsError < 1e-6, $"{name}: UNet output differs from a fresh model with the same LoRAs: rel {epsError:E3}");
            Assert.True(contextError < 1e-6, $"{name}: conditioning differs from a fresh model with the same LoRAs: rel {contextError:E3}");
            // not vacuous: each LoRA set changes both
            if (stage.Length > 0)
                Assert.True(Fixture.RelL2(eps, plainEps) > 1e-3 && Fixture.RelL2(context, plainContext) > 1e-3, $"{name}: changed nothing");
            foreach (var t in new[] { eps, context, expectedEps, expectedContext }) t.Dispose();
        }
        plainEps.Dispose();
        plainContext.Dispose();
        // after none, every weight is the file's again
        using var original = FreshModel(f, "sd15");
        Weights.AssertBitIdentical(Weights.Snapshot(original), model);
    }

    [SkippableFact]
    public void ChangingOneStrengthRewritesOnlyThatLorasWeights()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var model = FreshModel(f, "sd15");
        var targets = new LoraTargets(model);
        var a = Plan(f, "sd15-attn", targets);
        var b = Plan(f, "sd15-locon", targets);
        // B (LoCon) patches nearly every layer, A's attention projections included
        var aWeights = a.Matched.Select(m => m.Target.Weight).ToHashSet(ReferenceEqualityComparer.Instance);
        var onlyB = b.Matched.Select(m => m.Target.Weight).Where(w => !aWeights.Contains(w)).ToList();
        int both = b.Matched.Count - onlyB.Count;
        output.WriteLine($"A {a.Matched.Count} weights, B {b.Matched.Count}, both {both}");
        Assert.NotEmpty(onlyB);
        using var patcher = new LoraPatcher();

        Assert.Equal(a.Matched.Count + b.Matched.Count - both, patcher.Apply([new(a, 1, 1), new(b, 1, 1)]));
        // the same set again, as new objects: nothing to do
        Assert.Equal(0, patcher.Apply([new(a, 1, 1), new(b, 1, 1)]));

        // A's strength changes: A's weights are recomputed (with B's share), B's others stay as they are
        var bOnlyBefore = onlyB.Select(w => w.T.clone()).ToList();
        Assert.Equal(a.Matched.Count, patcher.Apply([new(a, 0.5, 0.5), new(b, 1, 1)]));
        Assert.All(onlyB.Zip(bOnlyBefore), p => Assert.True(p.First.T.bytes.SequenceEqual(p.Second.bytes)));

        // only B's UNet strength changes: only B's UNet weights are rewritten
        Assert.Equal(b.Count(LoraComponent.UNet), patcher.Apply([new(a, 0.5, 0.5), new(b, 0.3, 1)]));
        // a strength of 0 takes a LoRA's weights back to the originals
        Assert.Equal(b.Count(LoraComponent.TextEncoder1), patcher.Apply([new(a, 0.5, 0.5), new(b, 0.3, 0)]));
        Assert.Equal(b.Count(LoraComponent.UNet), patcher.Apply([new(a, 0.5, 0.5)]));
        Assert.Equal(a.Matched.Count, patcher.Apply([]));
        Assert.Equal(0, patcher.Apply([]));

        using var original = FreshModel(f, "sd15");
        Weights.AssertBitIdentical(Weights.Snapshot(original), model);
        foreach (var t in bOnlyBefore) t.Dispose();
    }

    [SkippableFact]
    public void AnSd1LoraOnTheSdxlModelFailsNamingSd1()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var model = FreshModel(f, "sdxl");
        var before = Weights.Snapshot(model);
        using var file = LoraFile.Load(Path.Combine(f.Root, "loras", "sd15-attn.safetensors"));
        var e = Assert.Throws<LoraFormatException>(() => LoraPlan.Create(file, new LoraTargets(model)));
        output.WriteLine(e.Message);
        Assert.Contains("sd1", e.Message);
        Assert.Contains("sdxl", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Weights.AssertBitIdentical(before, model);
    }
}
