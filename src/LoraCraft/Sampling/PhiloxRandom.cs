namespace LoraCraft.Sampling;

/// <summary>
/// The "NV" noise of A1111 (`modules/rng_philox.py`): what `torch.randn(shape, device="cuda")`
/// gives after `torch.manual_seed(seed)`, computed on any machine. Philox 4x32 with 10 rounds,
/// key = the 64-bit seed (low word first), counter = (call index of this generator, 0, element
/// index, 0); each element is one Box-Muller output of the first two words, in float64 as numpy
/// computes it, then rounded to float32. The k-th call (0-based) of one generator uses counter[0] = k.
/// </summary>
public sealed class PhiloxRandom(ulong seed)
{
    const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57;
    const uint W0 = 0x9E3779B9, W1 = 0xBB67AE85;
    // numpy's float32 constants, used in float64 arithmetic (uint32 * float32 array -> float64)
    static readonly double TwoPow32Inv = (float)2.3283064e-10;
    static readonly double TwoPow32Inv2Pi = (float)(2.3283064e-10 * 6.2831855);
    static readonly double HalfInv = (float)2.3283064e-10 / 2f, HalfInv2Pi = (float)(2.3283064e-10 * 6.2831855) / 2f;

    public ulong Seed { get; } = seed;
    /// <summary>How many draws this generator has made (the next draw's counter[0]).</summary>
    public uint Offset { get; private set; }

    /// <summary>The next draw: <paramref name="count"/> standard-normal float32 values.</summary>
    public float[] Next(long count)
    {
        if (count > uint.MaxValue) throw new ArgumentOutOfRangeException(nameof(count), count, "at most 2^32 values per draw");
        var result = new float[count];
        uint offset = Offset++;
        uint key0 = (uint)Seed, key1 = (uint)(Seed >> 32);
        Parallel.For(0, (count + 4095) / 4096, block =>
        {
            long end = Math.Min(count, (block + 1) * 4096);
            for (long i = block * 4096; i < end; i++)
            {
                var (x, y) = Philox(offset, (uint)i, key0, key1);
                result[i] = BoxMuller(x, y);
            }
        });
        return result;
    }

    /// <summary>The first two output words of Philox4x32-10 for counter (c0, 0, c2, 0).</summary>
    public static (uint, uint) Philox(uint c0, uint c2, uint k0, uint k1)
    {
        uint c1 = 0, c3 = 0;
        for (int round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                k0 += W0;
                k1 += W1;
            }
            ulong p0 = (ulong)c0 * M0, p1 = (ulong)c2 * M1;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0;
            uint n1 = (uint)p1;
            uint n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
            uint n3 = (uint)p0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        }
        return (c0, c1);
    }

    /// <summary>sqrt(-2 ln u) · sin(v) with A1111's u, v from the two words, float64, rounded to float32.</summary>
    public static float BoxMuller(uint x, uint y)
    {
        double u = x * TwoPow32Inv + HalfInv;
        double v = y * TwoPow32Inv2Pi + HalfInv2Pi;
        double s = Math.Sqrt(-2.0 * Math.Log(u));
        return (float)(s * Math.Sin(v));
    }
}
