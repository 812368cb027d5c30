using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Benchmarks;

/// <summary>
/// This machine's matrix-multiply rate in the compute dtype: the best of a few large products
/// (F.linear, the call the bf16 convolutions and projections go through), so a step's rate can
/// be put as a fraction of what the hardware and libtorch reach at best.
/// </summary>
static class GemmPeak
{
    public const long Size = 2048;

    /// <summary>FLOP/s of [Size × Size] · [Size × Size]ᵀ, best of <paramref name="reps"/> after one warm-up.</summary>
    public static double Measure(ScalarType dtype, int reps = 3)
    {
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(1);
        var a = randn([Size, Size], generator: g).to(dtype);
        var b = randn([Size, Size], generator: g).to(dtype);
        F.linear(a, b).Dispose();
        double best = double.MaxValue;
        for (int i = 0; i < reps; i++)
        {
            var clock = Stopwatch.StartNew();
            F.linear(a, b).Dispose();
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return 2.0 * Size * Size * Size / best;
    }
}
