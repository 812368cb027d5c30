using System.Diagnostics;
using LoraCraft.Runtime;
using LoraCraft.Sampling;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Sampling;

/// <summary>
/// Runs alone, after the parallel tests: forcing collections in a loop would otherwise make test
/// code elsewhere (which, unlike the library, may use TorchSharp's operators with numbers) flaky.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GcStress
{
    public const string Name = "GC stress (alone)";
}

/// <summary>
/// The samplers run over and over while another thread forces garbage collections and runs
/// finalizers. Before TensorMath, a temporary TorchSharp Scalar (made by <c>t * 0.5</c>, or by
/// <c>a + b</c> for its alpha) could be finalized during the native call that used it: the run
/// then failed in <c>c10::Scalar::toDouble</c> or, worse, produced other numbers. Every run must
/// give exactly the numbers of an undisturbed run. Bounded by time, not by count.
/// </summary>
[Collection(GcStress.Name)]
public class ScalarLifetimeStressTests(ITestOutputHelper output)
{
    static ScalarLifetimeStressTests() => TorchNative.Ensure();

    static readonly float[] Sigmas = Schedulers.Compute("karras", NoiseSchedule.Default, 12);

    /// <summary>A denoiser that does tensor arithmetic with numbers itself, as the real one does.</summary>
    static Tensor Denoise(Tensor x, float sigma)
    {
        using var scaled = x.Mul(1 / Math.Sqrt((double)sigma * sigma + 1));
        using var t = scaled.tanh();
        return t.Mul(0.5).Add(x, 0.1);
    }

    static Tensor Run(string sampler)
    {
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(7);
        using var ng = new torch.Generator(8);
        var x = randn([1, 4, 8, 8], generator: g).Mul(Sigmas[0]);
        NoiseSource noise = () => randn([1, 4, 8, 8], generator: ng);
        return Samplers.Sample(sampler, Denoise, x, Sigmas, noise).MoveToOuterDisposeScope();
    }

    /// <summary>Runs <paramref name="body"/> for a while as another thread collects garbage; returns the runs made.</summary>
    static int UnderCollections(TimeSpan duration, Action body)
    {
        using var stop = new CancellationTokenSource();
        var collector = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                // garbage of our own, so there is something to collect, then a full collection
                for (int i = 0; i < 64; i++) _ = new byte[256];
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        }) { IsBackground = true };
        collector.Start();
        int runs = 0;
        var clock = Stopwatch.StartNew();
        try
        {
            while (clock.Elapsed < duration)
            {
                body();
                runs++;
            }
        }
        finally
        {
            stop.Cancel();
            collector.Join();
        }
        return runs;
    }

    [SkippableFact]
    public void SamplersGiveTheSameNumbersWhileAnotherThreadCollectsGarbage()
    {
        var reference = Samplers.Names.ToDictionary(n => n, Run);
        try
        {
            int runs = UnderCollections(TimeSpan.FromSeconds(5), () =>
            {
                foreach (var name in Samplers.Names)
                {
                    using var again = Run(name);
                    Assert.True(again.Equals(reference[name]), $"{name} differs from the undisturbed run");
                }
            });
            output.WriteLine($"{runs} rounds of {Samplers.Names.Count} samplers");
        }
        finally
        {
            foreach (var t in reference.Values) t.Dispose();
        }
    }

    [SkippableFact]
    public void ModelsGiveTheSameNumbersWhileAnotherThreadCollectsGarbage()
    {
        var f = Conformance.Fixture.Require();
        using var model = LoraCraft.Models.Loading.CheckpointLoader.Load(f.ModelFile("sd15"),
            new LoraCraft.Models.Loading.LoadOptions { ConfigDir = f.DiffusersDir("sd15"), DType = ScalarType.Float32 });
        using var noGrad = torch.no_grad();
        Tensor Once()
        {
            using var scope = NewDisposeScope();
            using var cond = LoraCraft.Text.TextConditioner.Encode(model, "a cat on a mat");
            using var g = new torch.Generator(3);
            var x = randn([1, 4, 9, 8], generator: g);
            var eps = model.UNet.Forward(x, TensorMath.Full([1], 500), cond.Context);
            return LoraCraft.Pipelines.StableDiffusionPipeline.DecodeLatent(model, eps).MoveToOuterDisposeScope();
        }
        using var reference = Once();
        int runs = UnderCollections(TimeSpan.FromSeconds(4), () =>
        {
            using var again = Once();
            Assert.True(again.Equals(reference), "text encoder, UNet and VAE differ from the undisturbed run");
        });
        output.WriteLine($"{runs} text+UNet+VAE runs");
    }
}
