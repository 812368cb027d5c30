using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Random;
using LoraCraft.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>
/// Every adapter type merged through file -> plan -> patcher equals the update built
/// independently from the reference formula (<see cref="AdapterSamples"/>), bias and DoRA
/// included; bypass mode gives the same model outputs; the weights come back bit for bit.
/// </summary>
public class AdapterFormulaTests(AdapterFormulaTests.Zoo zoo, ITestOutputHelper output) : IClassFixture<AdapterFormulaTests.Zoo>
{
    static AdapterFormulaTests() => TorchNative.Ensure();

    /// <summary>One tiny model and the sample files for the whole class (every test restores the weights, and checks it).</summary>
    public sealed class Zoo : IDisposable
    {
        readonly TempDir _dir = new();
        public StableDiffusionModel Model { get; }
        public LoraTargets Targets { get; }
        public IReadOnlyList<AdapterSamples.Sample> Samples { get; }

        public Zoo()
        {
            TorchNative.Ensure();
            Model = RandomLoraTests.TinyModel(_dir, RandomModelKind.Sd15);
            Targets = new LoraTargets(Model);
            Samples = AdapterSamples.WriteAll(_dir.Path, Targets);
        }

        public void Dispose()
        {
            Model.Dispose();
            _dir.Dispose();
        }
    }

    public static TheoryData<string> SampleNames() =>
        new(["lora", "locon", "loha", "lokr", "ia3", "full", "norm", "glora", "oft", "boft", "dora", "peft-dora"]);

    [SkippableTheory, MemberData(nameof(SampleNames))]
    public void MergedUpdateMatchesTheReferenceFormula(string name)
    {
        var (model, targets) = (zoo.Model, zoo.Targets);
        var sample = zoo.Samples.Single(s => s.Name == name);
        using var file = LoraFile.Load(sample.Path);
        var plan = LoraPlan.Create(file, targets);
        Assert.Empty(plan.Unmatched);
        Assert.Equal(sample.Modules.Count, plan.Matched.Count);
        Assert.Equal(sample.Algorithm, file.Algorithm);
        var before = Weights.Snapshot(model);
        var originals = sample.Modules.ToDictionary(m => m.Target.Weight, m => m.Target.Weight.T.to(ScalarType.Float32).clone());
        var originalBias = sample.Modules.Where(m => m.BiasDelta is not null).ToDictionary(m => m.Target.Bias!, m => m.Target.Bias!.T.to(ScalarType.Float32).clone());
        using var patcher = new LoraPatcher();
        const double strength = 0.7;
        patcher.Apply([new LoraApplication(plan, strength, strength)]);
        using var noGrad = torch.no_grad();
        foreach (var m in sample.Modules)
        {
            var w0 = originals[m.Target.Weight];
            var expected = m.Delta(w0, strength);
            var actual = m.Target.Weight.T.to(ScalarType.Float32) - w0;
            double err = Fixture(actual, expected), size = expected.norm().item<float>() / w0.norm().item<float>();
            output.WriteLine($"{name} {m.Target.Name}: |Δ|/|W| {size:E2}, relative error {err:E2}");
            // the merged weight is stored in float32 at W's scale: an update far smaller than W would
            // be measured through that rounding, so every sample's update is a sizeable part of W
            Assert.True(size > 0.05, $"{m.Target.Name}: the update is only {size:E2} of the weight: the sample would test rounding");
            Assert.True(err < 1e-5, $"{m.Target.Name}: relative error {err:E2}");
            if (m.BiasDelta is { } bias)
            {
                var b0 = originalBias[m.Target.Bias!];
                Assert.True(Fixture(m.Target.Bias!.T.to(ScalarType.Float32) - b0, bias(strength)) < 1e-6, $"{m.Target.Name}: bias");
            }
        }
        patcher.Apply([]);
        Weights.AssertBitIdentical(before, model);
    }

    [SkippableTheory, MemberData(nameof(SampleNames))]
    public void BypassGivesTheMergedOutputs(string name)
    {
        var (model, targets) = (zoo.Model, zoo.Targets);
        var sample = zoo.Samples.Single(s => s.Name == name);
        using var file = LoraFile.Load(sample.Path);
        var plan = LoraPlan.Create(file, targets);
        var before = Weights.Snapshot(model);
        using var patcher = new LoraPatcher();
        using var plain = Outputs(model);
        patcher.Apply([new LoraApplication(plan, 0.8, 0.8)]);
        using var merged = Outputs(model);
        patcher.Apply([new LoraApplication(plan, 0.8, 0.8) { Bypass = true }]);
        // bypass leaves every weight that has a bypass slot untouched (norms have none and stay merged)
        foreach (var (module, target) in plan.Matched.Where(m => m.Target.Layer is not null))
            Assert.True((target.Weight.T == before[Key(model, target)]).all().item<bool>(), $"{target.Name} was modified in bypass mode");
        using var bypassed = Outputs(model);
        double change = Fixture(merged, plain), err = Fixture(bypassed, merged);
        output.WriteLine($"{name}: the adapter changes the outputs by {change:E2}; bypass vs merged {err:E2}");
        Assert.True(change > 1e-4, "the adapter does not change the outputs: the sample tests nothing");
        Assert.True(err < 1e-5, $"bypass differs from merged by {err:E2}");
        patcher.Apply([]);
        Weights.AssertBitIdentical(before, model);
        Assert.All(targets.Layers, l => Assert.Null(l.Target.Layer!.Adapters));
    }

    /// <summary>The UNet's output and the text encoder's hidden state on fixed random inputs, concatenated.</summary>
    static Tensor Outputs(StableDiffusionModel model)
    {
        using var noGrad = torch.no_grad();
        using var unet = RandomLoraTests.UNetOutput(model);
        var ids = torch.tensor(new long[] { 0, 5, 9, 17, 3, 1 }).unsqueeze(0);
        using var text = model.TextEncoders[0].Model.Forward(ids);
        return torch.cat([unet.flatten(), text.LastHiddenState.flatten()]);
    }

    static string Key(StableDiffusionModel model, LoraTarget t) => (t.Component == LoraComponent.UNet ? "unet." : "te1.") + t.Name;

    static double Fixture(Tensor actual, Tensor expected) => Conformance.Fixture.RelL2(actual, expected);
}
