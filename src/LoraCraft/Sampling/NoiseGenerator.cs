using static TorchSharp.torch;

namespace LoraCraft.Sampling;

/// <summary>Where noise comes from: torch's CPU generator (ComfyUI, A1111 "CPU") or Philox (A1111 "NV", CUDA's randn).</summary>
public enum RandomSource { Cpu, Nv }

/// <summary>One seeded generator of standard-normal noise; successive draws continue its stream.</summary>
public abstract class NoiseGenerator : IDisposable
{
    /// <summary>The next draw, float32 on the CPU.</summary>
    public abstract Tensor Next(long[] shape);

    public virtual void Dispose() { }

    public static NoiseGenerator Create(RandomSource source, ulong seed) => source switch
    {
        RandomSource.Nv => new Nv(seed),
        _ => new Cpu(seed),
    };

    /// <summary>`torch.randn(shape, generator)` on a CPU generator seeded with `manual_seed(seed)`.</summary>
    sealed class Cpu(ulong seed) : NoiseGenerator
    {
        readonly Generator _generator = new(seed);
        public override Tensor Next(long[] shape) => randn(shape, generator: _generator);
        public override void Dispose() => _generator.Dispose();
    }

    sealed class Nv(ulong seed) : NoiseGenerator
    {
        readonly PhiloxRandom _philox = new(seed);
        public override Tensor Next(long[] shape)
        {
            long n = shape.Aggregate(1L, (a, b) => checked(a * b));
            return tensor(_philox.Next(n), shape);
        }
    }
}
