using System.Globalization;

namespace LoraCraft.Pipelines;

/// <summary>
/// Seeds as users write them: 0 … 2⁶⁴−1 (ComfyUI's range; A1111's are below 2³²), and -1 (or
/// nothing) for "pick one at random", as A1111 means it. The seed actually used is always a
/// concrete number, so it can be printed and recorded.
/// </summary>
public static class Seeds
{
    /// <summary>A fresh random seed in A1111's range (below 2³²), so any tool can reuse it.</summary>
    public static ulong Random() => (ulong)System.Random.Shared.NextInt64(0, uint.MaxValue);

    /// <summary>Parses a seed: -1 or empty means random; other negative values and non-numbers are refused.</summary>
    public static ulong Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return Random();
        string t = text.Trim();
        if (ulong.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var v)) return v;
        if (long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var signed))
            return signed == -1 ? Random() : throw new UserErrorException($"seed must be -1 (random) or 0 to {ulong.MaxValue}, got {signed}");
        throw new UserErrorException($"seed must be an integer from 0 to {ulong.MaxValue} (or -1 for random), got '{t}'");
    }

    /// <summary>The same for a number from JSON (A1111 clients send -1 as a number).</summary>
    public static ulong FromNumber(long? value) => value switch
    {
        null or -1 => Random(),
        < 0 => throw new UserErrorException($"seed must be -1 (random) or 0 to {ulong.MaxValue}, got {value}"),
        _ => (ulong)value.Value,
    };

    /// <summary>Image <paramref name="index"/> of a batch uses seed + index (wrapping at 2⁶⁴, as ComfyUI's int64 does not).</summary>
    public static ulong ForImage(ulong seed, int index) => unchecked(seed + (ulong)index);
}
