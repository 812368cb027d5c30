namespace LoraCraft.Training;

/// <summary>
/// Seeds for the generators of a run, derived from the run's seed and a position (epoch, step,
/// purpose) with SplitMix64. Every random draw of training comes from a generator seeded this
/// way, so a resumed run draws exactly what the uninterrupted run drew at the same step.
/// </summary>
public static class RunSeeds
{
    public const ulong Init = 1, Epoch = 2, Step = 3, Latents = 4, Samples = 5;

    public static ulong Derive(ulong seed, ulong purpose, ulong index = 0)
    {
        ulong x = Mix(seed ^ Mix(purpose * 0x9E3779B97F4A7C15UL) ^ Mix(index + 0xD1B54A32D192ED03UL));
        // torch's manual_seed takes the value as is; keep it in the int64 range TorchSharp accepts
        return x & 0x7FFF_FFFF_FFFF_FFFFUL;
    }

    static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
