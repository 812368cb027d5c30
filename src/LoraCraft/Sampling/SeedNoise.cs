using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Sampling;

/// <summary>
/// How a seed becomes the noise of one image. ComfyUI: the initial noise is the first draw of a
/// generator seeded with the seed, ancestral samplers draw from a second generator seeded with
/// seed + 1. A1111 (`modules/rng.py` ImageRNG): one generator per image, the initial noise is its
/// first draw and every ancestral step takes its next draw.
/// </summary>
public enum NoiseConvention { ComfyUI, A1111 }

/// <summary>
/// The noise of one image: the initial draw (with A1111's variation seed mixed in when asked)
/// and the source of ancestral noise. Owns its generators.
/// </summary>
public sealed class SeedNoise : IDisposable
{
    readonly NoiseGenerator _ancestral;
    readonly long[] _shape;
    readonly List<NoiseGenerator> _owned;

    /// <summary>The initial noise, standard normal, of the latent's shape (the caller scales it by sigma).</summary>
    public Tensor Initial { get; }

    SeedNoise(Tensor initial, NoiseGenerator ancestral, long[] shape, List<NoiseGenerator> owned)
    {
        Initial = initial;
        _ancestral = ancestral;
        _shape = shape;
        _owned = owned;
    }

    /// <summary>Fresh noise for an ancestral step.</summary>
    public Tensor NextAncestral() => _ancestral.Next(_shape);

    /// <param name="subseedStrength">A1111's variation strength: 0 is the seed's noise, 1 the subseed's.</param>
    public static SeedNoise Create(long[] shape, ulong seed, RandomSource source = RandomSource.Cpu, NoiseConvention convention = NoiseConvention.ComfyUI,
                                   ulong subseed = 0, double subseedStrength = 0)
    {
        var owned = new List<NoiseGenerator>();
        try
        {
            Tensor? subnoise = null;
            if (subseedStrength != 0 && convention == NoiseConvention.A1111)
            {
                // A1111 draws the variation noise first, from a generator of its own
                using var sub = NoiseGenerator.Create(source, subseed);
                subnoise = sub.Next(shape);
            }
            var main = NoiseGenerator.Create(source, seed);
            owned.Add(main);
            var noise = main.Next(shape);
            if (subseedStrength != 0 && convention == NoiseConvention.ComfyUI)
            {
                using var sub = NoiseGenerator.Create(source, subseed);
                subnoise = sub.Next(shape);
            }
            if (subnoise is not null)
            {
                var mixed = Slerp(subseedStrength, noise, subnoise);
                noise.Dispose();
                subnoise.Dispose();
                noise = mixed;
            }
            NoiseGenerator ancestral = main;
            if (convention == NoiseConvention.ComfyUI)
            {
                ancestral = NoiseGenerator.Create(source, unchecked(seed + 1));
                owned.Add(ancestral);
            }
            return new SeedNoise(noise, ancestral, shape, owned);
        }
        catch
        {
            foreach (var g in owned) g.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A1111's `slerp(val, low, high)` on one image's noise [C, H, W] (here with a leading batch
    /// of 1): vectors along the height axis, interpolated per channel and column; nearly parallel
    /// ones are mixed linearly, with A1111's weights (low · val + high · (1 − val)).
    /// </summary>
    public static Tensor Slerp(double val, Tensor low, Tensor high)
    {
        using var scope = NewDisposeScope();
        bool batched = low.dim() == 4;
        var lo = batched ? low.squeeze(0) : low;
        var hi = batched ? high.squeeze(0) : high;
        var lowNorm = lo / lo.norm(1, keepdim: true);
        var highNorm = hi / hi.norm(1, keepdim: true);
        var dot = (lowNorm * highNorm).sum(1);
        Tensor res;
        if (dot.mean().item<float>() > 0.9995f) res = lo.Mul(val).Add(hi.Mul(1 - val));
        else
        {
            var omega = torch.acos(dot);
            var so = torch.sin(omega);
            res = ((torch.sin(omega.Mul(1.0 - val)) / so).unsqueeze(1) * lo).Add((torch.sin(omega.Mul(val)) / so).unsqueeze(1) * hi);
        }
        return (batched ? res.unsqueeze(0) : res).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Initial.Dispose();
        foreach (var g in _owned) g.Dispose();
    }
}
