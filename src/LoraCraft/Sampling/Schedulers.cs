namespace LoraCraft.Sampling;

/// <summary>
/// Sigma schedules (decreasing, ending in 0) as ComfyUI computes them, in float32 arithmetic
/// where it uses float32 tensors so schedules match it to the last bit.
/// </summary>
public static class Schedulers
{
    /// <summary>Our scheduler ids (<see cref="SamplerRegistry"/> holds A1111's labels and aliases).</summary>
    public static IReadOnlyList<string> Names => SamplerRegistry.SchedulerIds;

    /// <summary>The longest schedule computed for a denoise below 1 (steps / denoise, capped).</summary>
    public const int MaxDenoiseSchedule = 1_000_000;

    public static float[] Compute(string name, NoiseSchedule s, int steps) => SamplerRegistry.RequireScheduler(name).Compute(s, steps);

    /// <summary>
    /// For denoise &lt; 1: the schedule of int(steps / denoise) steps, keeping its last steps + 1 sigmas.
    /// </summary>
    public static float[] ForDenoise(string name, NoiseSchedule s, int steps, double denoise)
    {
        if (steps < 1) throw new UserErrorException($"steps must be 1 or more, got {steps}");
        if (denoise is <= 0 or > 1) throw new UserErrorException($"denoise must be in (0, 1], got {denoise}");
        if (denoise >= 1) return Compute(name, s, steps);
        // a tiny denoise (1e-9) would ask for billions of sigmas; beyond a million the kept tail no longer changes
        int total = (int)Math.Min(steps / denoise, MaxDenoiseSchedule);
        var all = Compute(name, s, total);
        return all[^(steps + 1)..];
    }

    /// <summary>Timesteps evenly spaced from the largest to the smallest, as sigmas.</summary>
    internal static float[] Normal(NoiseSchedule s, int steps, bool sgm)
    {
        float start = s.Timestep(s.SigmaMax), end = s.Timestep(s.SigmaMin);
        bool appendZero = true;
        float[] ts;
        if (sgm)
        {
            ts = Linspace(start, end, steps + 1)[..^1];
        }
        else
        {
            if (Math.Abs(s.Sigma(end)) < 1e-5) { steps += 1; appendZero = false; }
            ts = Linspace(start, end, steps);
        }
        var sigmas = ts.Select(s.Sigma).ToList();
        if (appendZero) sigmas.Add(0);
        return sigmas.ToArray();
    }

    /// <summary>Karras et al. (2022) schedule with rho = 7.</summary>
    public static float[] Karras(int steps, float sigmaMin, float sigmaMax, float rho = 7)
    {
        // k-diffusion: the inverse-rho powers are Python floats, the ramp a float32 tensor
        var ramp = Linspace(0, 1, steps);
        float minInv = (float)Math.Pow(sigmaMin, 1.0 / rho), maxInv = (float)Math.Pow(sigmaMax, 1.0 / rho);
        float span = (float)(Math.Pow(sigmaMin, 1.0 / rho) - Math.Pow(sigmaMax, 1.0 / rho));
        return ramp.Select(r => MathF.Pow(maxInv + r * span, rho)).Append(0f).ToArray();
    }

    /// <summary>Evenly spaced in log sigma.</summary>
    public static float[] Exponential(int steps, float sigmaMin, float sigmaMax) =>
        Linspace((float)Math.Log(sigmaMax), (float)Math.Log(sigmaMin), steps).Select(MathF.Exp).Append(0f).ToArray();

    /// <summary>ComfyUI's `simple`: every (N / steps)-th training sigma from the top.</summary>
    internal static float[] Simple(NoiseSchedule s, int steps)
    {
        double stride = (double)s.Sigmas.Length / steps;
        var sigmas = new List<float>();
        for (int x = 0; x < steps; x++) sigmas.Add(s.Sigmas[^(1 + (int)(x * stride))]);
        sigmas.Add(0);
        return sigmas.ToArray();
    }

    /// <summary>
    /// ComfyUI's `ddim_uniform`: training steps 1, 1 + k, 1 + 2k, ... (k = N / steps, rounded down)
    /// from the top, then 0. The count follows from the stride, so it can differ from steps (7 for 6),
    /// as in ComfyUI and A1111's DDIM.
    /// </summary>
    internal static float[] DdimUniform(NoiseSchedule s, int steps)
    {
        int stride = Math.Max(s.Sigmas.Length / steps, 1);
        var sigmas = new List<float>();
        for (int t = 1; t < s.Sigmas.Length; t += stride) sigmas.Add(s.Sigmas[t]);
        sigmas.Reverse();
        sigmas.Add(0);
        return sigmas.ToArray();
    }

    /// <summary>torch.linspace in float32: start + i * step for the first half, end - (n-1-i) * step after.</summary>
    internal static float[] Linspace(float start, float end, int n)
    {
        if (n == 1) return [start];
        var r = new float[n];
        float step = (end - start) / (n - 1);
        int half = n / 2;
        for (int i = 0; i < n; i++) r[i] = i < half ? start + step * i : end - step * (n - 1 - i);
        return r;
    }
}
