using LoraCraft.Lora;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>
/// A loaded adapter is used again and again (the server keeps files and plans between jobs):
/// computing its update must never change it. Float32 files are the case where a stored tensor
/// is already what the merge needs (no conversion copy): the norm and full-diff updates used to
/// be scaled in place there, so every merge multiplied the file's diff by the strength.
/// </summary>
public class AdapterReuseTests
{
    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();

    [Fact]
    public void MergingTwiceGivesTheSameWeightForEveryType()
    {
        TorchNative.Ensure();
        using var dir = new TempDir();
        var checkpoint = dir.File("tiny.safetensors");
        var config = RandomCheckpoint.Make(checkpoint, RandomArchitecture.Of(RandomModelKind.Sd15, RandomModelSize.Tiny), seed: 11)!;
        using var model = CheckpointLoader.Load(checkpoint, new LoadOptions { ConfigDir = config });
        var targets = new LoraTargets(model);
        foreach (var sample in AdapterSamples.WriteAll(dir.Path, targets))
        {
            using var file = LoraFile.Load(sample.Path);
            var plan = LoraPlan.Create(file, targets);
            Assert.NotEmpty(plan.Matched);
            foreach (var (module, target) in plan.Matched)
            {
                using var scope = NewDisposeScope();
                var w0 = target.Weight.T.to(ScalarType.Float32).clone();
                var first = w0.clone();
                module.AddDelta(first, 0.8);
                var second = w0.clone();
                module.AddDelta(second, 0.8);
                Assert.True(Same(first, second), $"{sample.Name}: {target.Name} changed between two merges");
                Assert.True(Same(module.MergedDelta(w0, 0.5), module.MergedDelta(w0, 0.5)), $"{sample.Name}: {target.Name} bypass update changed");
                if (target.Bias is { } bias && module.BiasDelta is not null)
                {
                    var b0 = bias.T.to(ScalarType.Float32).clone();
                    var b1 = b0.clone();
                    module.AddBiasDelta(b1, 0.8);
                    var b2 = b0.clone();
                    module.AddBiasDelta(b2, 0.8);
                    Assert.True(Same(b1, b2), $"{sample.Name}: {target.Name} bias changed between two merges");
                }
            }
        }
    }
}
