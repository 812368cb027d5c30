using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>The fused bf16 low-rank merge against the same sum in float64, and the patcher using it on a bf16 model.</summary>
public class LowRankMergeTests(ITestOutputHelper output)
{
    static LowRankMergeTests() => TorchNative.Ensure();

    /// <summary>Counts of elements that differ from <paramref name="expected"/>, and the largest difference in bf16 units in the last place.</summary>
    static (long Differ, long MaxUlps) Ulps(Tensor got, Tensor expected)
    {
        // bf16 bit patterns (sign-magnitude; values one ulp apart share a sign)
        var a = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, short>(got.contiguous().bytes).ToArray();
        var b = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, short>(expected.contiguous().bytes).ToArray();
        long differ = 0, max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            long d = Math.Abs(a[i] - b[i]);
            if (d > 0) differ++;
            max = Math.Max(max, d);
        }
        return (differ, max);
    }

    [SkippableTheory]
    [InlineData(64, 320, false)]    // whole blocks of 4 rows x 32 columns
    [InlineData(37, 100, false)]    // a partial row block, columns past a multiple of 32
    [InlineData(3, 24, false)]      // fewer than 4 rows, fewer than 32 columns
    [InlineData(64, 320, true)]     // factors stored in float16, as LoRA files hold them
    [InlineData(37, 100, true)]
    public void MergesAsTheFloat64SumRoundedToBf16(int rows, int cols, bool halfFactors)
    {
        Skip.IfNot(LowRankMerge.Supported, "this CPU has no AVX-512");
        using var g = new Generator(7);
        var factorType = halfFactors ? ScalarType.Float16 : ScalarType.Float32;
        using var w0 = randn([rows, cols], generator: g).to(ScalarType.BFloat16);
        using var up1 = randn([rows, 4], generator: g).to(factorType);
        using var down1 = randn([4, cols], generator: g).to(factorType);
        using var up2 = randn([rows, 8], generator: g).Mul(0.1).to(factorType);
        using var down2 = randn([8, cols], generator: g).to(factorType);
        using var dest = empty_like(w0);
        LowRankMerge.Apply(w0, [new LowRankMerge.Factor(up1, down1, 0.3f), new LowRankMerge.Factor(up2, down2, -1.5f)], dest);
        using var exact = (w0.to(ScalarType.Float64) + up1.to(ScalarType.Float64).matmul(down1.to(ScalarType.Float64)).Mul(0.3f)
                           + up2.to(ScalarType.Float64).matmul(down2.to(ScalarType.Float64)).Mul(-1.5f)).to(ScalarType.BFloat16);
        var (differ, maxUlps) = Ulps(dest, exact);
        output.WriteLine($"{rows}x{cols}: {differ} of {dest.numel()} elements differ from the float64 sum (at most {maxUlps} ulp)");
        Assert.True(maxUlps <= 1, $"{maxUlps} ulps");
        Assert.True(differ <= Math.Max(2, dest.numel() / 100), $"{differ} elements differ");
        // in place (the original is the destination) gives the same
        using var inPlace = w0.clone();
        LowRankMerge.Apply(inPlace, [new LowRankMerge.Factor(up1, down1, 0.3f), new LowRankMerge.Factor(up2, down2, -1.5f)], inPlace);
        Assert.Equal((0L, 0L), Ulps(inPlace, dest));
        // no factors: the original, bit for bit
        using var copy = empty_like(w0);
        LowRankMerge.Apply(w0, [], copy);
        Assert.Equal((0L, 0L), Ulps(copy, w0));
    }

    [SkippableTheory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.Float32)]
    public void AStoredOriginalIsRoundedToBf16AsLoadingDoes(ScalarType stored)
    {
        Skip.IfNot(LowRankMerge.Supported, "this CPU has no AVX-512");
        using var g = new Generator(9);
        // every finite float16 value (subnormals, zeros, both signs) or float32 values at all scales
        using var values = stored == ScalarType.Float16
            ? torch.tensor(Enumerable.Range(0, 65536).Where(b => (b & 0x7C00) != 0x7C00).Select(b => (float)BitConverter.UInt16BitsToHalf((ushort)b)).ToArray()).to(ScalarType.Float16)
            : randn([61440], generator: g).mul(torch.exp(randn([61440], generator: g).Mul(8)));
        long n = values.numel() / 64 * 64;
        using var w = values.narrow(0, 0, n).reshape(-1, 64).contiguous();
        using var expected = w.to(ScalarType.BFloat16);
        using var dest = empty_like(expected);
        LowRankMerge.Apply(w, [], dest);
        Assert.Equal((0L, 0L), Ulps(dest, expected));
        // and with an update: the same as merging into the converted weight
        using var up = randn([w.shape[0], 2], generator: g);
        using var down = randn([2, 64], generator: g).Mul(1e-3);
        using var fromStored = empty_like(expected);
        using var fromLoaded = empty_like(expected);
        LowRankMerge.Apply(w, [new LowRankMerge.Factor(up, down, 0.5f)], fromStored);
        LowRankMerge.Apply(expected, [new LowRankMerge.Factor(up, down, 0.5f)], fromLoaded);
        Assert.Equal((0L, 0L), Ulps(fromStored, fromLoaded));
    }

    [SkippableTheory]
    [InlineData(RandomModelKind.Sd15)]
    [InlineData(RandomModelKind.Sdxl)]   // its second text encoder stores q, k, v fused (in_proj): thirds re-read as byte ranges
    public void ThePatcherMergesBf16LorasInOnePassAndRestoresExactly(RandomModelKind kind)
    {
        Skip.IfNot(LowRankMerge.Supported, "this CPU has no AVX-512");
        using var dir = new TempDir();
        var path = dir.File("tiny.safetensors");
        var config = RandomCheckpoint.Make(path, RandomArchitecture.Of(kind, RandomModelSize.Tiny), seed: 11);
        using var model = CheckpointLoader.Load(path, new LoadOptions { ConfigDir = config, DType = ScalarType.BFloat16 });
        var targets = new LoraTargets(model);
        var loraPath = dir.File("lora.safetensors");
        RandomLora.Make(loraPath, targets, new RandomLoraOptions(Rank: 4, Seed: 8, Layers: RandomLoraLayers.Attention));
        using var file = LoraFile.Load(loraPath);
        var plan = LoraPlan.Create(file, targets);
        var before = Weights.Snapshot(model);
        var linear = plan.Matched.Where(m => m.Target.Weight.T.dim() == 2).ToList();
        Assert.Contains(linear, m => m.Target.Component != LoraComponent.UNet);
        Assert.NotEmpty(linear);
        using var patcher = new LoraPatcher();
        patcher.Apply([new LoraApplication(plan, 0.7, 0.7)]);
        long differ = 0, total = 0;
        foreach (var (module, target) in linear)
        {
            // the general path's arithmetic: float32 W0 + strength · update, rounded to bf16
            using var f32 = target.Weight.T.to(ScalarType.Float32);
            using var w0 = before[Weights.NameOf(model, target.Weight)].to(ScalarType.Float32);
            module.AddDelta(w0, 0.7);
            using var expected = w0.to(ScalarType.BFloat16);
            var (d, ulps) = Ulps(target.Weight.T, expected);
            Assert.True(ulps <= 1, $"{target.Name}: {ulps} ulps");
            differ += d;
            total += expected.numel();
        }
        output.WriteLine($"{differ} of {total} merged bf16 values differ by one ulp from the float32 add-then-round path");
        Assert.True(differ <= total / 100);
        patcher.Apply([]);
        Weights.AssertBitIdentical(before, model);
    }
}
