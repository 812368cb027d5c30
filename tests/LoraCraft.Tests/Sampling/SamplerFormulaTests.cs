using LoraCraft.Runtime;
using LoraCraft.Sampling;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Sampling;

/// <summary>
/// Samplers driven by denoisers whose answers are known in closed form: a single data point (every
/// sampler must land on it), a Gaussian (the probability-flow ODE has an exact solution, so the
/// convergence order shows; ancestral samplers must reproduce its mean and variance), and
/// DDIM's alpha-bar recurrence for the ddim alias. Float64 unless said, so rounding stays far below
/// the errors measured.
/// </summary>
public class SamplerFormulaTests(ITestOutputHelper output)
{
    static readonly NoiseSchedule S = NoiseSchedule.Default;
    static readonly string[] Ancestral = ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral"];
    /// <summary>Samplers that call the model twice per step (once on a step to sigma 0).</summary>
    static readonly string[] TwoCalls = ["heun", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral"];

    static SamplerFormulaTests() => TorchNative.Ensure();

    public static TheoryData<string> AllSamplers()
    {
        var data = new TheoryData<string>();
        foreach (var name in Samplers.Names) data.Add(name);
        return data;
    }

    sealed class Counter(Denoiser inner)
    {
        public readonly List<float> Sigmas = new();
        public int Calls => Sigmas.Count;
        public Tensor Call(Tensor x, float sigma)
        {
            Sigmas.Add(sigma);
            return inner(x, sigma);
        }
    }

    sealed class SyncProgress(Action<SamplerStep> onReport) : IProgress<SamplerStep>
    {
        public void Report(SamplerStep value) => onReport(value);
    }

    static Tensor Randn(long seed, params long[] shape)
    {
        using var g = new torch.Generator((ulong)seed);
        return randn(shape, dtype: float64, generator: g);
    }

    static NoiseSource Noise(long seed, long[] shape, Action? onDraw = null)
    {
        var g = new torch.Generator((ulong)seed);
        return () =>
        {
            onDraw?.Invoke();
            return randn(shape, dtype: float64, generator: g);
        };
    }

    static readonly NoiseSource NoNoise = () => throw new InvalidOperationException("a deterministic sampler asked for noise");

    static double RelL2(Tensor a, Tensor b)
    {
        using var d = a - b;
        return d.norm().item<double>() / b.norm().item<double>();
    }

    [SkippableFact]
    public void SamplerListsAgree()
    {
        Assert.Equal(Ancestral, Samplers.Names.Where(Samplers.IsAncestral));
        Assert.Subset(Samplers.Names.ToHashSet(), TwoCalls.ToHashSet());
    }

    // ---- a single data point: denoised(x, sigma) = mu exactly ----

    [SkippableTheory, MemberData(nameof(AllSamplers))]
    public void EverySamplerLandsOnASingleDataPoint(string name)
    {
        using var scope = NewDisposeScope();
        long[] shape = [1, 4, 8, 8];
        var mu = Randn(1, shape);
        foreach (var sigmas in new[] { Schedulers.Compute("karras", S, 8), Schedulers.Compute("normal", S, 5), Schedulers.Compute("simple", S, 2) })
        {
            var x0 = mu + Randn(2, shape) * (double)sigmas[0];
            // uni_pc stops at sigma 0.001 instead of 0: along the exact path x - mu shrinks like sigma
            var expected = name.StartsWith("uni_pc") ? mu + (x0 - mu) * (0.001 / sigmas[0]) : mu;
            var x = Samplers.Sample(name, (_, _) => mu.clone(), x0.clone(), sigmas, Noise(3, shape));
            double err = (x - expected).abs().max().item<double>();
            Assert.True(err < 1e-9, $"{name} with {sigmas.Length - 1} steps: max |x - expected| = {err:E2}");
            // and in float32, the engine's precision
            var mu32 = mu.to(float32);
            var noise32 = Noise(3, shape);
            var x32 = Samplers.Sample(name, (_, _) => mu32.clone(), x0.to(float32), sigmas, () => noise32().to(float32));
            Assert.Equal(ScalarType.Float32, x32.dtype);
            double err32 = (x32.to(float64) - expected).abs().max().item<double>();
            Assert.True(err32 < 1e-5, $"{name} in float32 with {sigmas.Length - 1} steps: max |x - expected| = {err32:E2}");
        }
    }

    // ---- Gaussian data N(mu, s^2): D(x, sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2) ----

    sealed class Gaussian(Tensor mu, Tensor s)
    {
        readonly Tensor _s2 = s * s;
        public Tensor Mu => mu;
        public Tensor Denoise(Tensor x, float sigma)
        {
            double v = (double)sigma * sigma;
            return (_s2 * x + mu * v) / (_s2 + v);
        }
        /// <summary>The probability-flow ODE's solution: x - mu scales with sqrt(s^2 + sigma^2).</summary>
        public Tensor Flow(Tensor x0, double sigma0, double sigma) =>
            mu + (x0 - mu) * ((_s2 + sigma * sigma).sqrt() / (_s2 + sigma0 * sigma0).sqrt());
    }

    /// <summary>Per-element means and spreads, from very narrow (stiff near sigma_min) to wide.</summary>
    static Gaussian MakeGaussian(long[] shape) => new(Randn(11, shape), Randn(12, shape).abs() * 0.6 + 0.05);

    /// <summary>Karras sigmas from sigma_max down to sigma_min, without the final 0: steps with a smooth exact solution.</summary>
    static float[] KarrasWithoutZero(int steps) => Schedulers.Karras(steps + 1, S.SigmaMin, S.SigmaMax)[..^1];

    [SkippableTheory]
    [InlineData("euler", 0.85, 1.2)]
    [InlineData("ddim", 0.85, 1.2)]
    [InlineData("heun", 1.8, 2.3)]
    [InlineData("dpm_2", 1.8, 2.3)]
    [InlineData("dpmpp_2m", 1.8, 2.3)]
    [InlineData("lms", 1.8, 4.5)]
    // UniPC's last step is first order (ComfyUI's lower_order_final), which caps the order at 2;
    // its higher-order steps show in the error size instead (the next test)
    [InlineData("uni_pc", 2.0, 4.5)]
    [InlineData("uni_pc_bh2", 2.0, 4.5)]
    public void DeterministicSamplersConvergeToTheExactFlowWithTheirOrder(string name, double minOrder, double maxOrder)
    {
        using var scope = NewDisposeScope();
        long[] shape = [1, 4, 8, 8];
        var g = MakeGaussian(shape);
        var z = Randn(13, shape);
        int[] steps = [12, 24, 48, 96];
        var errors = new double[steps.Length];
        for (int k = 0; k < steps.Length; k++)
        {
            var sigmas = KarrasWithoutZero(steps[k]);
            var x0 = g.Mu + z * Math.Sqrt(1 + (double)sigmas[0] * sigmas[0]);
            var x = Samplers.Sample(name, g.Denoise, x0.clone(), sigmas, NoNoise);
            errors[k] = RelL2(x, g.Flow(x0, sigmas[0], sigmas[^1]));
        }
        var orders = Enumerable.Range(0, steps.Length - 1).Select(k => Math.Log2(errors[k] / errors[k + 1])).ToArray();
        output.WriteLine($"{name}: errors {string.Join(", ", errors.Select(e => e.ToString("E2")))}; orders {string.Join(", ", orders.Select(o => o.ToString("F2")))}");
        Assert.True(orders[^1] >= minOrder && orders[^1] <= maxOrder,
            $"{name}: observed order {orders[^1]:F2} (errors {string.Join(", ", errors.Select(e => e.ToString("E2")))}) outside [{minOrder}, {maxOrder}]");
        Assert.True(errors[^1] < 1e-2, $"{name}: error {errors[^1]:E2} with {steps[^1]} steps");
    }

    [SkippableFact]
    public void UniPcErrsAnOrderOfMagnitudeLessThanDpmpp2mForTheSameModelCalls()
    {
        using var scope = NewDisposeScope();
        long[] shape = [1, 4, 8, 8];
        var g = MakeGaussian(shape);
        var z = Randn(13, shape);
        foreach (int steps in new[] { 24, 48, 96 })
        {
            var sigmas = KarrasWithoutZero(steps);
            var x0 = g.Mu + z * Math.Sqrt(1 + (double)sigmas[0] * sigmas[0]);
            var exact = g.Flow(x0, sigmas[0], sigmas[^1]);
            double dpmpp = RelL2(Samplers.Sample("dpmpp_2m", g.Denoise, x0.clone(), sigmas, NoNoise), exact);
            foreach (var name in new[] { "uni_pc", "uni_pc_bh2" })
            {
                double unipc = RelL2(Samplers.Sample(name, g.Denoise, x0.clone(), sigmas, NoNoise), exact);
                Assert.True(unipc < dpmpp / 5, $"{steps} steps: {name} error {unipc:E2}, dpmpp_2m {dpmpp:E2}");
            }
        }
    }

    /// <summary>
    /// Final x for a Gaussian (mu 0.3, s^2 0.25) from a line-by-line float64 transliteration of
    /// ComfyUI's comfy/extra_samplers/uni_pc.py (sample_unipc in its x / sqrt(1 + sigma^2) space,
    /// UniPC.sample multistep, multistep_uni_pc_bh_update), for start values -20, 3.7 and 12.25.
    /// The sigmas are exact in float32, and the final 0 became float32(0.001) there too.
    /// </summary>
    public static TheoryData<string, float[], double[]> UniPcReference() => new()
    {
        { "uni_pc", [14.5f, 6.25f, 3f, 1.5f, 0.75f, 0.375f, 0.125f, 0.0625f, 0.03125f, 0f], [-0.4498270451341901, 0.42558679573676095, 0.7414006497218506] },
        { "uni_pc", [14.5f, 6.25f, 3f, 1.5f, 0.75f, 0.375f, 0.125f, 0.0625f, 0.03125f], [-0.46505363309842923, 0.42813706170121474, 0.750364084508681] },
        { "uni_pc", [14.5f, 1.5f, 0f], [0.0864233002685329, 0.3357714669500979, 0.4257261853099031] },
        { "uni_pc", [14.5f, 3f, 0.375f, 0f], [-0.18694836552098143, 0.3815578543237113, 0.5866518703436325] },
        { "uni_pc", [14.5f, 3f, 0.375f, 0.0625f, 0f], [-0.5164787109151416, 0.4367501289217481, 0.7806364825337914] },
        { "uni_pc_bh2", [14.5f, 6.25f, 3f, 1.5f, 0.75f, 0.375f, 0.125f, 0.0625f, 0.03125f, 0f], [-0.44883299051480413, 0.4254203038300657, 0.7408154796380254] },
        { "uni_pc_bh2", [14.5f, 6.25f, 3f, 1.5f, 0.75f, 0.375f, 0.125f, 0.0625f, 0.03125f], [-0.4580573489266053, 0.4269652702635694, 0.7462455822498985] },
        { "uni_pc_bh2", [14.5f, 1.5f, 0f], [0.08650931110077738, 0.3357570611949436, 0.4256755533175227] },
        { "uni_pc_bh2", [14.5f, 3f, 0.375f, 0f], [-0.13844486220011612, 0.373434114851251, 0.5580993154330735] },
        { "uni_pc_bh2", [14.5f, 3f, 0.375f, 0.0625f, 0f], [-0.30491015165344254, 0.40131500076954213, 0.6560924291753026] },
    };

    [SkippableTheory, MemberData(nameof(UniPcReference))]
    public void UniPcMatchesComfyUIsAlgorithm(string name, float[] sigmas, double[] expected)
    {
        using var scope = NewDisposeScope();
        var g = new Gaussian(full(3, 0.3, dtype: float64), full(3, 0.5, dtype: float64));
        var x = Samplers.Sample(name, g.Denoise, tensor(new[] { -20.0, 3.7, 12.25 }), sigmas, NoNoise);
        var got = x.data<double>().ToArray();
        for (int i = 0; i < 3; i++)
            Assert.True(Math.Abs(got[i] - expected[i]) < 1e-12, $"{name} {sigmas.Length - 1} steps, element {i}: {got[i]:R}, expected {expected[i]:R}");
    }

    [SkippableTheory]
    [InlineData("euler_ancestral")]
    [InlineData("dpm_2_ancestral")]
    [InlineData("dpmpp_2s_ancestral")]
    public void AncestralSamplersReproduceTheGaussiansMeanAndVariance(string name)
    {
        using var scope = NewDisposeScope();
        long[] shape = [1, 4, 64, 64]; // 16384 samples of one N(0.3, 0.5^2)
        const double mu = 0.3, sd = 0.5;
        var g = new Gaussian(full(shape, mu, dtype: float64), full(shape, sd, dtype: float64));
        // the ancestral chain's variance misses the data's by O(1 / steps) (euler_ancestral: -21 % at
        // 30 Karras steps, -3 % at 300, by its variance recursion), so take many steps
        var sigmas = Schedulers.Compute("karras", S, 300);
        var (mean, variance) = Run(name, g, sd, sigmas, shape, noiseScale: 1);
        output.WriteLine($"{name}: mean {mean:F4} (data {mu}), variance {variance:F4} (data {sd * sd})");
        // 4 standard errors for the mean; 8 % on the variance (its standard error is 1.1 %)
        Assert.True(Math.Abs(mean - mu) < 4 * sd / 128, $"{name}: mean {mean:F4}, data mean {mu}");
        Assert.True(Math.Abs(variance / (sd * sd) - 1) < 0.08, $"{name}: variance {variance:F4}, data variance {sd * sd}");
        if (name != "euler_ancestral") return;
        // the bound catches a mis-scaled noise term
        var (_, wrong) = Run(name, g, sd, sigmas, shape, noiseScale: 1.3);
        Assert.True(Math.Abs(wrong / (sd * sd) - 1) >= 0.08, $"noise x1.3 still gives variance {wrong:F4}");
    }

    /// <summary>Starts from the exact noisy marginal N(mu, sd^2 + sigma_0^2) and samples.</summary>
    static (double Mean, double Variance) Run(string name, Gaussian g, double sd, float[] sigmas, long[] shape, double noiseScale)
    {
        double start = Math.Sqrt(sd * sd + (double)sigmas[0] * sigmas[0]);
        var x0 = g.Mu + Randn(21, shape) * start;
        var gen = new torch.Generator(22);
        NoiseSource noise = () => randn(shape, dtype: float64, generator: gen) * noiseScale;
        var x = Samplers.Sample(name, g.Denoise, x0, sigmas, noise);
        return (x.mean().item<double>(), x.var().item<double>());
    }

    // ---- plumbing: model calls, noise draws, cancellation ----

    [SkippableTheory, MemberData(nameof(AllSamplers))]
    public void ModelCallsAndNoiseDrawsPerStep(string name)
    {
        using var scope = NewDisposeScope();
        long[] shape = [1, 4, 4, 4];
        var g = MakeGaussian(shape);
        foreach (bool toZero in new[] { true, false })
        {
            var sigmas = toZero ? Schedulers.Compute("karras", S, 6) : KarrasWithoutZero(6);
            int n = sigmas.Length - 1;
            var counter = new Counter(g.Denoise);
            int draws = 0;
            var noise = Samplers.IsAncestral(name) ? Noise(5, shape, () => draws++) : NoNoise;
            Samplers.Sample(name, counter.Call, Randn(6, shape) * 15.0, sigmas, noise);

            int expectedCalls = TwoCalls.Contains(name) ? (toZero ? 2 * n - 1 : 2 * n) : n;
            Assert.Equal(expectedCalls, counter.Calls);
            int expectedDraws = Samplers.IsAncestral(name) ? sigmas.Skip(1).Count(s => s > 0) : 0;
            Assert.Equal(expectedDraws, draws);
            Assert.Equal(sigmas[0], counter.Sigmas[0]);
            if (!TwoCalls.Contains(name)) Assert.Equal(sigmas[..n], counter.Sigmas);
            if (name == "heun")
            {
                // each step: at sigma_i, then at sigma_{i+1} after the Euler guess; the step to 0 only once
                var expected = Enumerable.Range(0, n).SelectMany(i => sigmas[i + 1] > 0 ? new[] { sigmas[i], sigmas[i + 1] } : [sigmas[i]]);
                Assert.Equal(expected, counter.Sigmas);
            }
        }
    }

    [SkippableTheory, MemberData(nameof(AllSamplers))]
    public void CancelBeforeStartCallsNothing(string name)
    {
        using var scope = NewDisposeScope();
        long[] shape = [1, 4, 4, 4];
        var counter = new Counter(MakeGaussian(shape).Denoise);
        var ctx = new SamplerContext(Cancel: new CancellationToken(canceled: true));
        Assert.Throws<OperationCanceledException>(() =>
            Samplers.Sample(name, counter.Call, Randn(6, shape) * 15.0, Schedulers.Compute("karras", S, 5), Noise(5, shape), ctx));
        Assert.Equal(0, counter.Calls);
    }

    [SkippableTheory, MemberData(nameof(AllSamplers))]
    public void CancelDuringAStepStopsWhenThatStepIsDone(string name)
    {
        using var scope = NewDisposeScope();
        long[] shape = [1, 4, 4, 4];
        var sigmas = Schedulers.Compute("karras", S, 5);
        // model calls after two steps: two-call samplers 4, uni_pc 3 (its start call plus a corrector per step)
        int callsAfterTwo = TwoCalls.Contains(name) ? 4 : name.StartsWith("uni_pc") ? 3 : 2;
        using var cts = new CancellationTokenSource();
        var reported = new List<int>();

        // cancelled from the progress handler after step 2
        var counter = new Counter(MakeGaussian(shape).Denoise);
        var ctx = new SamplerContext(new SyncProgress(p => { reported.Add(p.Index); if (p.Index == 2) cts.Cancel(); }), cts.Token);
        Assert.Throws<OperationCanceledException>(() => Samplers.Sample(name, counter.Call, Randn(6, shape) * 15.0, sigmas, Noise(5, shape), ctx));
        Assert.Equal(callsAfterTwo, counter.Calls);
        Assert.Equal(new[] { 1, 2 }, reported);

        // cancelled from inside the second step's first model call: the step still completes
        using var cts2 = new CancellationTokenSource();
        int calls = 0, callsAfterOne = TwoCalls.Contains(name) || name.StartsWith("uni_pc") ? 2 : 1;
        var inner = MakeGaussian(shape);
        var counter2 = new Counter((x, s) => { if (++calls == callsAfterOne + 1) cts2.Cancel(); return inner.Denoise(x, s); });
        var ctx2 = new SamplerContext(Cancel: cts2.Token);
        Assert.Throws<OperationCanceledException>(() => Samplers.Sample(name, counter2.Call, Randn(6, shape) * 15.0, sigmas, Noise(5, shape), ctx2));
        Assert.Equal(callsAfterTwo, counter2.Calls);
    }

    // ---- ddim is euler: DDIM's eta = 0 update in alpha-bar form, step by step ----

    [SkippableFact]
    public void DdimAliasIsExactlyTheDdimUpdate()
    {
        using var scope = NewDisposeScope();
        long[] shape = [1, 4, 8, 8];
        // an arbitrary eps model of (scaled input, timestep), used the way the pipeline calls the UNet
        static Tensor Eps(Tensor xIn, int t) => (xIn * 1.3 + t / 1000.0).sin() * 0.8 + xIn * 0.1;
        int[] ts = [951, 801, 651, 501, 351, 201, 51, 1];
        var sigmas = ts.Select(t => S.Sigmas[t]).Append(0f).ToArray();
        var noise = Randn(31, shape);

        // DDIM (Song et al.) on x_t = sqrt(a) x0 + sqrt(1 - a) eps, with a = alpha-bar of each sigma
        static double Alpha(float sigma) => 1 / (1 + (double)sigma * sigma);
        var xt = noise.clone();
        for (int i = 0; i < ts.Length; i++)
        {
            double a = Alpha(sigmas[i]), aPrev = Alpha(sigmas[i + 1]); // alpha-bar at sigma 0 is 1
            var eps = Eps(xt, ts[i]);
            var x0 = (xt - eps * Math.Sqrt(1 - a)) / Math.Sqrt(a);
            xt = x0 * Math.Sqrt(aPrev) + eps * Math.Sqrt(1 - aPrev);
        }

        // k-diffusion: x = x_t * sqrt(1 + sigma^2), denoised = x - sigma * eps(x / sqrt(1 + sigma^2), t)
        Denoiser model = (x, sigma) =>
        {
            double cIn = 1 / Math.Sqrt(1 + (double)sigma * sigma);
            return x - Eps(x * cIn, S.Timestep(sigma)) * (double)sigma;
        };
        var start = noise * Math.Sqrt(1 + (double)sigmas[0] * sigmas[0]);
        var viaAlias = Samplers.Sample("ddim", model, start.clone(), sigmas, NoNoise);
        double err = (viaAlias - xt).abs().max().item<double>() / xt.abs().max().item<double>();
        output.WriteLine($"ddim via euler vs DDIM recurrence: max difference {err:E2} of max |x|");
        // the only difference left is k-diffusion's step sigma_next - sigma, taken in float32
        Assert.True(err < 1e-7, $"ddim (euler) differs from the DDIM update by {err:E2} of max |x|");
        Assert.True(RelL2(viaAlias, noise) > 0.1, "the eps model must move x for the test to mean something");
    }
}
