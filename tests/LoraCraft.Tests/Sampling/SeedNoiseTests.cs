using LoraCraft.Sampling;
using LoraCraft.Tests.Conformance;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Sampling;

/// <summary>How a seed becomes noise under ComfyUI's and A1111's conventions, and A1111's variation-seed slerp.</summary>
public class SeedNoiseTests
{
    static readonly long[] Shape = [1, 4, 8, 8];

    [Fact]
    public void ComfyConventionIsTheSeedThenSeedPlusOne()
    {
        using var noise = SeedNoise.Create(Shape, 5);
        using var g = new Generator(5);
        using var g1 = new Generator(6);
        using var initial = randn(Shape, generator: g);
        using var a1 = randn(Shape, generator: g1);
        using var a2 = randn(Shape, generator: g1);
        using var n1 = noise.NextAncestral();
        using var n2 = noise.NextAncestral();
        Assert.True(A1111ConditioningCases.Same(initial, noise.Initial));
        Assert.True(A1111ConditioningCases.Same(a1, n1) && A1111ConditioningCases.Same(a2, n2));
    }

    [Theory]
    [InlineData(RandomSource.Cpu)]
    [InlineData(RandomSource.Nv)]
    public void A1111ConventionContinuesOneGenerator(RandomSource source)
    {
        using var noise = SeedNoise.Create(Shape, 5, source, NoiseConvention.A1111);
        using var g = NoiseGenerator.Create(source, 5);
        using var d0 = g.Next(Shape);
        using var d1 = g.Next(Shape);
        using var d2 = g.Next(Shape);
        using var n1 = noise.NextAncestral();
        using var n2 = noise.NextAncestral();
        Assert.True(A1111ConditioningCases.Same(d0, noise.Initial));
        Assert.True(A1111ConditioningCases.Same(d1, n1) && A1111ConditioningCases.Same(d2, n2));
    }

    [Fact]
    public void SlerpIsA1111sAlongTheHeightAxis()
    {
        using var g = new Generator(3);
        using var low = randn([1, 2, 5, 3], generator: g);
        using var high = randn([1, 2, 5, 3], generator: g);
        const double val = 0.3;
        using var ours = SeedNoise.Slerp(val, low, high);
        // float64 reference: per channel c and column w, the vectors over h
        var l = low.to(ScalarType.Float64).data<double>().ToArray();
        var h = high.to(ScalarType.Float64).data<double>().ToArray();
        var o = ours.to(ScalarType.Float64).data<double>().ToArray();
        for (int c = 0; c < 2; c++)
            for (int w = 0; w < 3; w++)
            {
                int At(int y) => (c * 5 + y) * 3 + w;
                double nl = Math.Sqrt(Enumerable.Range(0, 5).Sum(y => l[At(y)] * l[At(y)]));
                double nh = Math.Sqrt(Enumerable.Range(0, 5).Sum(y => h[At(y)] * h[At(y)]));
                double dot = Enumerable.Range(0, 5).Sum(y => l[At(y)] / nl * (h[At(y)] / nh));
                double omega = Math.Acos(dot), so = Math.Sin(omega);
                for (int y = 0; y < 5; y++)
                {
                    double want = Math.Sin((1 - val) * omega) / so * l[At(y)] + Math.Sin(val * omega) / so * h[At(y)];
                    Assert.Equal(want, o[At(y)], 4);
                }
            }
    }

    [Fact]
    public void VariationStrengthEndsAtTheSubseedsNoise()
    {
        using var none = SeedNoise.Create(Shape, 5, RandomSource.Nv, NoiseConvention.A1111, subseed: 9, subseedStrength: 0);
        using var full = SeedNoise.Create(Shape, 5, RandomSource.Nv, NoiseConvention.A1111, subseed: 9, subseedStrength: 1);
        using var seed = NoiseGenerator.Create(RandomSource.Nv, 5);
        using var sub = NoiseGenerator.Create(RandomSource.Nv, 9);
        using var s0 = seed.Next(Shape);
        using var s9 = sub.Next(Shape);
        Assert.True(A1111ConditioningCases.Same(s0, none.Initial));
        Assert.True(A1111ConditioningCases.Same(s9, full.Initial));
        // the ancestral stream stays the seed's: its second draw
        using var next = full.NextAncestral();
        using var s0b = seed.Next(Shape);
        Assert.True(A1111ConditioningCases.Same(s0b, next));
    }
}
