using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Sampling;

/// <summary>The model seen by a sampler: x at noise level sigma -> its denoised estimate.</summary>
public delegate Tensor Denoiser(Tensor x, float sigma);

/// <summary>Fresh standard-normal noise of the latent's shape (ancestral samplers).</summary>
public delegate Tensor NoiseSource();

/// <summary>
/// A finished step (1-based <see cref="Index"/> of <see cref="Total"/>), with the sampler's x and
/// the step's denoised estimate as k-diffusion's callback gives them. The tensors are borrowed:
/// valid only while the report runs (copy what you keep).
/// </summary>
public readonly record struct SamplerStep(int Index, int Total)
{
    public Tensor? X { get; init; }
    public Tensor? Denoised { get; init; }
}

/// <summary>Sampling was asked to stop early (A1111's skip / interrupt); carries the last denoised estimate.</summary>
public sealed class SamplingStoppedException(Tensor lastDenoised) : Exception("sampling stopped early")
{
    public Tensor LastDenoised { get; } = lastDenoised;
}

/// <summary>Per-run plumbing shared by every sampler: progress, cancellation, early stop.</summary>
public sealed record SamplerContext(IProgress<SamplerStep>? Progress = null, CancellationToken Cancel = default)
{
    /// <summary>Steps finished so far (the denoiser's current step is this + 1), for prompt editing.</summary>
    public int CompletedSteps { get; private set; }

    /// <summary>Asked after each step: true ends sampling there (<see cref="SamplingStoppedException"/>).</summary>
    public Func<bool>? Stop { get; init; }

    /// <summary>Called before every model call with (0-based step, steps): per-step LoRA strengths.</summary>
    public Action<int, int>? BeforeModelCall { get; init; }

    /// <summary>
    /// Called after each finished step: reports it, then stops if cancellation was requested, so
    /// a cancel (from the progress handler or another thread) never starts another model call.
    /// </summary>
    public void Step(int i, int total, Tensor? x = null, Tensor? denoised = null)
    {
        CompletedSteps++;
        Progress?.Report(new SamplerStep(i + 1, total) { X = x, Denoised = denoised });
        Cancel.ThrowIfCancellationRequested();
        if (i + 1 < total && Stop?.Invoke() == true)
            throw new SamplingStoppedException((denoised ?? x)?.clone() ?? throw new InvalidOperationException("nothing to stop with"));
    }
}

/// <summary>
/// k-diffusion's samplers, each a short pure function of (denoiser, x, sigmas) with default
/// parameters (eta 1, s_noise 1, no churn). Guidance and masks live in the denoiser.
/// Every sampler owns its input x and returns a new tensor.
/// </summary>
public static partial class Samplers
{
    /// <summary>Our sampler ids (<see cref="SamplerRegistry"/> holds everything else about them).</summary>
    public static IReadOnlyList<string> Names => SamplerRegistry.SamplerIds;

    public static bool IsAncestral(string name) => SamplerRegistry.Sampler(name)?.Ancestral == true;

    public static Tensor Sample(string name, Denoiser model, Tensor x, float[] sigmas, NoiseSource noise, SamplerContext? ctx = null)
    {
        ctx ??= new SamplerContext();
        var sampler = SamplerRegistry.RequireSampler(name);
        ctx.Cancel.ThrowIfCancellationRequested();
        return sampler.Run(model, x, sigmas, noise, ctx);
    }

    /// <summary>The ODE derivative dx/dsigma = (x - denoised) / sigma.</summary>
    static Tensor ToD(Tensor x, double sigma, Tensor denoised)
    {
        var diff = x - denoised;
        return diff.DivInPlace(sigma);
    }

    /// <summary>
    /// Splits a step into a deterministic part (down) and fresh noise (up), eta = 1. In float32,
    /// as k-diffusion computes it on 0-d tensors: the sub-step sigmas pick the UNet's timestep.
    /// </summary>
    public static (float Down, float Up) AncestralStep(float from, float to, float eta = 1)
    {
        if (eta == 0) return (to, 0);
        float up = MathF.Min(to, eta * MathF.Sqrt(to * to * (from * from - to * to) / (from * from)));
        float down = MathF.Sqrt(to * to - up * up);
        return (down, up);
    }

    /// <summary>exp(lerp(log a, log b, 0.5)) in float32: the log-space midpoint of the DPM2 samplers.</summary>
    static float LogMidpoint(float a, float b)
    {
        float la = MathF.Log(a), lb = MathF.Log(b);
        return MathF.Exp(la + 0.5f * (lb - la));
    }

    /// <summary>The ancestral part of a step: fresh noise scaled by sigma_up, unless the step ends at 0.</summary>
    static void AddNoise(Tensor x, float sigmaNext, float up, NoiseSource noise)
    {
        if (sigmaNext <= 0) return;
        using var z = noise();
        x.AddInPlace(z.MulInPlace(up)); // as k-diffusion: noise * sigma_up, then added
    }

    /// <summary>x + d * dt, as k-diffusion computes it (two roundings, not a fused multiply-add).</summary>
    static Tensor Euler(Tensor x, Tensor d, double dt)
    {
        using var step = d.Mul(dt);
        return x.Add(step);
    }

    /// <summary>a * p - b * q, in that order of operations.</summary>
    static Tensor Combine(Tensor a, double p, Tensor b, double q)
    {
        using var ap = a.Mul(p);
        using var bq = b.Mul(q);
        return ap - bq;
    }

    static Tensor Replace(Tensor old, Tensor next)
    {
        old.Dispose();
        return next;
    }

    public static Tensor Euler(Denoiser model, Tensor x, float[] sigmas, SamplerContext ctx)
    {
        int n = sigmas.Length - 1;
        for (int i = 0; i < n; i++)
        {
            using var denoised = model(x, sigmas[i]);
            using var d = ToD(x, sigmas[i], denoised);
            x = Replace(x, Euler(x, d, sigmas[i + 1] - sigmas[i]));
            ctx.Step(i, n, x, denoised);
        }
        return x;
    }

    public static Tensor EulerAncestral(Denoiser model, Tensor x, float[] sigmas, NoiseSource noise, SamplerContext ctx)
    {
        int n = sigmas.Length - 1;
        for (int i = 0; i < n; i++)
        {
            using var denoised = model(x, sigmas[i]);
            var (down, up) = AncestralStep(sigmas[i], sigmas[i + 1]);
            using var d = ToD(x, sigmas[i], denoised);
            x = Replace(x, Euler(x, d, down - sigmas[i]));
            AddNoise(x, sigmas[i + 1], up, noise);
            ctx.Step(i, n, x, denoised);
        }
        return x;
    }

    public static Tensor Heun(Denoiser model, Tensor x, float[] sigmas, SamplerContext ctx)
    {
        int n = sigmas.Length - 1;
        for (int i = 0; i < n; i++)
        {
            using var denoised = model(x, sigmas[i]);
            using var d = ToD(x, sigmas[i], denoised);
            double dt = sigmas[i + 1] - sigmas[i];
            if (sigmas[i + 1] == 0)
            {
                x = Replace(x, Euler(x, d, dt));
            }
            else
            {
                using var x2 = Euler(x, d, dt);
                using var denoised2 = model(x2, sigmas[i + 1]);
                using var d2 = ToD(x2, sigmas[i + 1], denoised2);
                using var sum = d.Add(d2);
                using var avg = sum.Div(2);
                x = Replace(x, Euler(x, avg, dt));
            }
            ctx.Step(i, n, x, denoised);
        }
        return x;
    }

    public static Tensor Dpm2(Denoiser model, Tensor x, float[] sigmas, SamplerContext ctx)
    {
        int n = sigmas.Length - 1;
        for (int i = 0; i < n; i++)
        {
            using var denoised = model(x, sigmas[i]);
            using var d = ToD(x, sigmas[i], denoised);
            if (sigmas[i + 1] == 0)
            {
                x = Replace(x, Euler(x, d, sigmas[i + 1] - sigmas[i]));
            }
            else
            {
                // midpoint in log sigma
                float mid = LogMidpoint(sigmas[i], sigmas[i + 1]);
                using var x2 = Euler(x, d, mid - sigmas[i]);
                using var denoised2 = model(x2, mid);
                using var d2 = ToD(x2, mid, denoised2);
                x = Replace(x, Euler(x, d2, sigmas[i + 1] - sigmas[i]));
            }
            ctx.Step(i, n, x, denoised);
        }
        return x;
    }

    public static Tensor Dpm2Ancestral(Denoiser model, Tensor x, float[] sigmas, NoiseSource noise, SamplerContext ctx)
    {
        int n = sigmas.Length - 1;
        for (int i = 0; i < n; i++)
        {
            using var denoised = model(x, sigmas[i]);
            var (down, up) = AncestralStep(sigmas[i], sigmas[i + 1]);
            using var d = ToD(x, sigmas[i], denoised);
            if (down == 0)
            {
                x = Replace(x, Euler(x, d, down - sigmas[i]));
            }
            else
            {
                float mid = LogMidpoint(sigmas[i], down);
                using var x2 = Euler(x, d, mid - sigmas[i]);
                using var denoised2 = model(x2, mid);
                using var d2 = ToD(x2, mid, denoised2);
                x = Replace(x, Euler(x, d2, down - sigmas[i]));
            }
            AddNoise(x, sigmas[i + 1], up, noise);
            ctx.Step(i, n, x, denoised);
        }
        return x;
    }

    /// <summary>Linear multistep of order 4: Adams-Bashforth coefficients over the sigma grid.</summary>
    public static Tensor Lms(Denoiser model, Tensor x, float[] sigmas, SamplerContext ctx, int order = 4)
    {
        int n = sigmas.Length - 1;
        var t = sigmas.Select(s => (double)s).ToArray();
        var ds = new List<Tensor>();
        for (int i = 0; i < n; i++)
        {
            using var denoised = model(x, sigmas[i]);
            ds.Add(ToD(x, sigmas[i], denoised));
            if (ds.Count > order) { ds[0].Dispose(); ds.RemoveAt(0); }
            int cur = Math.Min(i + 1, order);
            var update = torch.zeros_like(x);
            for (int j = 0; j < cur; j++)
                using (var term = ds[ds.Count - 1 - j].Mul(LmsCoefficient(cur, t, i, j))) update.AddInPlace(term);
            x = Replace(x, x.Add(update));
            update.Dispose();
            ctx.Step(i, n, x, denoised);
        }
        foreach (var d in ds) d.Dispose();
        return x;
    }

    /// <summary>
    /// Integral over [t_i, t_{i+1}] of the Lagrange basis polynomial for point i-j among the
    /// last <paramref name="order"/> points; Gauss-Legendre with 4 nodes is exact for these cubics.
    /// </summary>
    public static double LmsCoefficient(int order, double[] t, int i, int j)
    {
        double Basis(double tau)
        {
            double prod = 1;
            for (int k = 0; k < order; k++)
                if (k != j) prod *= (tau - t[i - k]) / (t[i - j] - t[i - k]);
            return prod;
        }
        double a = t[i], b = t[i + 1], half = (b - a) / 2, mid = (a + b) / 2;
        double[] nodes = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
        double[] weights = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];
        double sum = 0;
        for (int q = 0; q < 4; q++) sum += weights[q] * Basis(mid + half * nodes[q]);
        return sum * half;
    }

    public static Tensor DpmPp2sAncestral(Denoiser model, Tensor x, float[] sigmas, NoiseSource noise, SamplerContext ctx)
    {
        int n = sigmas.Length - 1;
        for (int i = 0; i < n; i++)
        {
            using var denoised = model(x, sigmas[i]);
            var (down, up) = AncestralStep(sigmas[i], sigmas[i + 1]);
            if (down == 0)
            {
                using var d = ToD(x, sigmas[i], denoised);
                x = Replace(x, Euler(x, d, down - sigmas[i]));
            }
            else
            {
                // DPM-Solver++(2S): half a step in log-sigma time, then the full step from there
                // (float32, like k-diffusion's 0-d tensors: the midpoint sigma picks a timestep)
                float tNow = -MathF.Log(sigmas[i]), tNext = -MathF.Log(down);
                float h = tNext - tNow, s = tNow + 0.5f * h;
                float sigmaS = MathF.Exp(-s);
                using var x2 = Combine(x, sigmaS / MathF.Exp(-tNow), denoised, double.ExpM1(-h * 0.5));
                using var denoised2 = model(x2, sigmaS);
                x = Replace(x, Combine(x, MathF.Exp(-tNext) / MathF.Exp(-tNow), denoised2, double.ExpM1(-h)));
            }
            AddNoise(x, sigmas[i + 1], up, noise);
            ctx.Step(i, n, x, denoised);
        }
        return x;
    }

    public static Tensor DpmPp2m(Denoiser model, Tensor x, float[] sigmas, SamplerContext ctx)
    {
        int n = sigmas.Length - 1;
        Tensor? oldDenoised = null;
        for (int i = 0; i < n; i++)
        {
            var denoised = model(x, sigmas[i]);
            double t = -Math.Log(sigmas[i]);
            double tNext = sigmas[i + 1] > 0 ? -Math.Log(sigmas[i + 1]) : double.PositiveInfinity;
            double h = tNext - t;
            double ratio = sigmas[i + 1] / (double)sigmas[i]; // sigma_fn(t_next) / sigma_fn(t)
            double expm1 = sigmas[i + 1] > 0 ? double.ExpM1(-h) : -1;
            if (oldDenoised is null || sigmas[i + 1] == 0)
            {
                x = Replace(x, Combine(x, ratio, denoised, expm1));
            }
            else
            {
                double hLast = t - (-Math.Log(sigmas[i - 1]));
                double r = hLast / h;
                using var blended = Combine(denoised, 1 + 1 / (2 * r), oldDenoised, 1 / (2 * r));
                x = Replace(x, Combine(x, ratio, blended, expm1));
            }
            oldDenoised?.Dispose();
            oldDenoised = denoised;
            ctx.Step(i, n, x, denoised);
        }
        oldDenoised?.Dispose();
        return x;
    }
}
