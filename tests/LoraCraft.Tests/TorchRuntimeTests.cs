using LoraCraft.Runtime;
using TorchSharp;
using Xunit;

namespace LoraCraft.Tests;

public class TorchRuntimeTests
{
    [SkippableFact]
    public void SeededRandnMatchesPyTorch()
    {
        TorchNative.Ensure();
        // Job-owned generator, as the engine uses: same stream as torch.manual_seed(42).
        using var g = new torch.Generator(42);
        using var x = torch.randn(4, generator: g);
        float[] expected = [0.33669037f, 0.12880941f, 0.23446237f, 0.23033303f];
        var got = x.data<float>().ToArray();
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], got[i], 6);
    }

    [SkippableFact]
    public void GlobalManualSeedMatchesPyTorch()
    {
        TorchNative.Ensure();
        torch.manual_seed(42);
        var got = torch.randn(4).data<float>().ToArray();
        float[] expected = [0.33669037f, 0.12880941f, 0.23446237f, 0.23033303f];
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], got[i], 6);
    }

    [SkippableFact]
    public void MarkWeakFlagsOnlyTheNamedVersion()
    {
        var original = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(original), $"missing {original}");
        var bytes = File.ReadAllBytes(original);
        var copy = (byte[])bytes.Clone();
        int n = ElfVersionNeeds.MarkWeak(copy, "GLIBCXX_3.4.32");
        Assert.Equal(1, n);
        // exactly one 16-bit flags field changed, by the weak bit
        var diffs = Enumerable.Range(0, bytes.Length).Where(i => bytes[i] != copy[i]).ToArray();
        Assert.Single(diffs);
        Assert.Equal(0x2, copy[diffs[0]] ^ bytes[diffs[0]]);
        Assert.Equal(0, ElfVersionNeeds.MarkWeak((byte[])bytes.Clone(), "GLIBCXX_9.9.99"));
    }
}
