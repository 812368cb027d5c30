using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Sampling;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Sampling;

/// <summary>Every draw of more/philox-randn.* (A1111's rng_philox.py): same float32 values, successive draws of one generator.</summary>
public class PhiloxNoiseTests(ITestOutputHelper output)
{
    [SkippableFact]
    public void EveryDrawMatchesA1111()
    {
        var root = FixturePaths.Root ?? throw new SkipException(Conformance.Fixture.MissingMessage);
        var json = Path.Combine(root, "more", "philox-randn.json");
        if (!File.Exists(json)) throw new SkipException($"{json} not found: skipped");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        using var expected = SafetensorsFile.Open(Path.Combine(root, "more", "philox-randn.safetensors"));
        int draws = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            ulong seed = c.GetProperty("seed").GetUInt64();
            using var generator = NoiseGenerator.Create(RandomSource.Nv, seed);
            foreach (var d in c.GetProperty("draws").EnumerateArray())
            {
                var shape = d.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                using var ours = generator.Next(shape);
                using var want = expected.Load(d.GetProperty("tensor").GetString()!, ScalarType.Float32);
                Assert.Equal(want.shape, ours.shape);
                long differing = ours.ne(want).sum().item<long>();
                output.WriteLine($"seed {seed} draw {d.GetProperty("tensor").GetString()}: {differing} of {want.numel()} values differ");
                Assert.True(differing == 0, $"seed {seed}, {d.GetProperty("tensor").GetString()}: {differing} values differ, max |diff| {(ours - want).abs().max().item<float>():E3}");
                draws++;
            }
        }
        Assert.True(draws >= 10, $"only {draws} draws checked");
    }

    [Fact]
    public void SeedZeroStartsAsCudaRandnDoes()
    {
        // torch.randn((3, 4), device="cuda") after torch.manual_seed(0), as rng_philox.py documents it
        using var g = NoiseGenerator.Create(RandomSource.Nv, 0);
        using var x = g.Next([3, 4]);
        var v = x.data<float>().ToArray();
        // A1111 quotes CUDA's values; its float32 Box-Muller constants agree to about 2e-7
        Assert.True(Math.Abs(v[0] - -0.92466259) < 1e-6 && Math.Abs(v[1] - -0.42534415) < 1e-6 && Math.Abs(v[11] - 2.26550497) < 1e-6,
                    $"{v[0]}, {v[1]}, {v[11]}");
    }

    [Fact]
    public void CpuSourceIsTorchsCpuGenerator()
    {
        using var g = NoiseGenerator.Create(RandomSource.Cpu, 1234);
        using var first = g.Next([1, 4, 8, 8]);
        using var second = g.Next([1, 4, 8, 8]);
        using var reference = new Generator(1234);
        using var a = randn([1, 4, 8, 8], generator: reference);
        using var b = randn([1, 4, 8, 8], generator: reference);
        Assert.True(first.eq(a).all().item<bool>() && second.eq(b).all().item<bool>());
    }
}
