using LoraCraft.Models;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>Copies of a model's patchable networks (UNet, text encoders) to prove weights bit for bit.</summary>
static class Weights
{
    public static Dictionary<string, Tensor> Snapshot(StableDiffusionModel model) =>
        Of(model).ToDictionary(w => w.Name, w => w.Weight.T.clone());

    /// <summary>Every weight of <paramref name="model"/> has exactly the bytes of the one in <paramref name="expected"/>.</summary>
    public static void AssertBitIdentical(Dictionary<string, Tensor> expected, StableDiffusionModel model)
    {
        var names = new List<string>();
        foreach (var (name, w) in Of(model))
        {
            names.Add(name);
            // compared in logical order: bf16 convolution kernels are stored channels-last
            using var actual = w.T.contiguous();
            using var original = expected[name].contiguous();
            Assert.True(actual.bytes.SequenceEqual(original.bytes), $"{name} differs from the original");
        }
        Assert.Equal(expected.Count, names.Count);
    }

    /// <summary>The snapshot name of <paramref name="weight"/> in <paramref name="model"/>.</summary>
    public static string NameOf(StableDiffusionModel model, Weight weight) => Of(model).First(x => ReferenceEquals(x.Weight, weight)).Name;

    static IEnumerable<(string Name, Weight Weight)> Of(StableDiffusionModel model) =>
        model.UNet.Weights("unet.").Concat(model.TextEncoders.SelectMany((e, i) => e.Model.Weights($"te{i + 1}.")));
}
