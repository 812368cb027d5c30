using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Sampling;

/// <summary>
/// The discrete noise schedule of SD1/SD2/SDXL (scaled-linear betas, 1000 steps) in sigma form,
/// with ComfyUI's conventions: sigmas stored in float32, `Timestep(sigma)` = index of the nearest
/// log-sigma, `Sigma(t)` = log-linear interpolation between neighbouring steps.
/// </summary>
public sealed class NoiseSchedule
{
    public static NoiseSchedule Default { get; } = new(0.00085, 0.012, 1000);

    /// <summary>sigma for each training timestep 0..N-1, ascending (float32 values).</summary>
    public float[] Sigmas { get; }
    readonly float[] _logSigmas;

    public NoiseSchedule(double linearStart, double linearEnd, int steps)
    {
        Sigmas = new float[steps];
        _logSigmas = new float[steps];
        double a = Math.Sqrt(linearStart), b = Math.Sqrt(linearEnd);
        double step = (b - a) / (steps - 1);
        double cumprod = 1;
        for (int i = 0; i < steps; i++)
        {
            // torch.linspace's float64 formula, then everything in float64 until stored
            double s = i < steps / 2 ? a + step * i : b - step * (steps - 1 - i);
            cumprod *= 1 - s * s;
            double sigma = Math.Sqrt((1 - cumprod) / cumprod);
            Sigmas[i] = (float)sigma;
            _logSigmas[i] = (float)Math.Log(sigma);
        }
    }

    public float SigmaMin => Sigmas[0];
    public float SigmaMax => Sigmas[^1];

    /// <summary>Index of the training step whose log-sigma is nearest (ComfyUI's `timestep`).</summary>
    public int Timestep(float sigma)
    {
        float log = MathF.Log(sigma);
        int best = 0;
        float bestDist = float.PositiveInfinity;
        for (int i = 0; i < _logSigmas.Length; i++)
        {
            float d = MathF.Abs(log - _logSigmas[i]);
            if (d < bestDist) { bestDist = d; best = i; }
        }
        return best;
    }

    /// <summary>ComfyUI's percent_to_sigma: the sigma at a fraction of the run (0 → above every sigma, 1 → 0).</summary>
    public float PercentToSigma(double percent)
    {
        if (percent <= 0) return 999999999.9f;
        if (percent >= 1) return 0;
        return Sigma((float)((1.0 - percent) * 999.0));
    }

    /// <summary>Sigma at a fractional timestep, interpolating log-sigma linearly (ComfyUI's `sigma`).</summary>
    public float Sigma(float t)
    {
        t = Math.Clamp(t, 0, Sigmas.Length - 1);
        int lo = (int)MathF.Floor(t), hi = (int)MathF.Ceiling(t);
        float w = t - MathF.Floor(t);
        return MathF.Exp((1 - w) * _logSigmas[lo] + w * _logSigmas[hi]);
    }
}
