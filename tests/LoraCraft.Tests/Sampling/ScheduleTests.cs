using LoraCraft.Runtime;
using LoraCraft.Sampling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Sampling;

/// <summary>
/// Schedules the fixtures do not cover, against values re-derived here from their definitions
/// (ComfyUI's comfy/samplers.py) on a training schedule computed independently with torch.
/// </summary>
public class ScheduleTests
{
    static readonly NoiseSchedule S = NoiseSchedule.Default;
    static readonly float[] Grid = TrainingSigmas();

    /// <summary>betas = linspace(sqrt(0.00085), sqrt(0.012))^2 and sigma = sqrt((1 - ac) / ac), in float64 with torch.</summary>
    static float[] TrainingSigmas()
    {
        TorchNative.Ensure();
        using var betas = torch.linspace(Math.Sqrt(0.00085), Math.Sqrt(0.012), 1000, dtype: float64).pow(2);
        using var ac = torch.cumprod(1 - betas, 0);
        using var sigmas = ((1 - ac) / ac).sqrt().to(float32);
        return sigmas.data<float>().ToArray();
    }

    static void AssertClose(double expected, double actual, double rel, string what) =>
        Assert.True(Math.Abs(actual - expected) <= rel * Math.Abs(expected), $"{what}: expected {expected:R}, got {actual:R}");

    [SkippableFact]
    public void TrainingSigmasMatchTorchAndComfyConstants()
    {
        Assert.Equal(Grid, S.Sigmas);
        // ComfyUI's KarrasScheduler node defaults, written to 7 or 8 digits
        AssertClose(14.614642, S.SigmaMax, 1e-6, "sigma_max");
        AssertClose(0.0291675, S.SigmaMin, 2e-5, "sigma_min");
    }

    [SkippableTheory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(10)]
    [InlineData(20)]
    [InlineData(3)]
    [InlineData(7)]
    public void SimpleTakesEveryNthTrainingSigmaFromTheTop(int steps)
    {
        // sigmas[-(1 + int(i * 1000 / steps))]; the products are never within rounding of an integer here
        var expected = Enumerable.Range(0, steps).Select(i => Grid[999 - i * 1000 / steps]).Append(0f).ToArray();
        Assert.Equal(expected, Schedulers.Compute("simple", S, steps));
    }

    [SkippableFact]
    public void SimpleOfThreeStepsUsesTimesteps999_666_333()
    {
        Assert.Equal(new[] { Grid[999], Grid[666], Grid[333], 0f }, Schedulers.Compute("simple", S, 3));
    }

    [SkippableTheory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(10)]
    [InlineData(20)]
    [InlineData(7)]
    public void SgmUniformSpacesStepsPlusOneTimestepsAndDropsTheLast(int steps)
    {
        var got = Schedulers.Compute("sgm_uniform", S, steps);
        Assert.Equal(steps + 1, got.Length);
        Assert.Equal(0f, got[^1]);
        for (int j = 0; j < steps; j++)
        {
            // timestep 999 - 999 j / steps, sigma by log-linear interpolation, all in float64
            double t = 999 - 999.0 * j / steps;
            int lo = (int)Math.Floor(t), hi = (int)Math.Ceiling(t);
            double w = t - lo;
            double sigma = Math.Exp((1 - w) * Math.Log(Grid[lo]) + w * Math.Log(Grid[hi]));
            AssertClose(sigma, got[j], 2e-6, $"sgm_uniform({steps})[{j}] at t={t}");
        }
    }

    [SkippableFact]
    public void SgmUniformIsNormalWithOneMoreStepLessItsLastSigma()
    {
        var sgm = Schedulers.Compute("sgm_uniform", S, 5);
        var normal = Schedulers.Compute("normal", S, 6);
        Assert.Equal(normal[..5].Append(0f), sgm);
        Assert.Equal(new[] { S.Sigma(999), 0f }, Schedulers.Compute("sgm_uniform", S, 1));
    }

    [SkippableTheory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(10)]
    [InlineData(20)]
    [InlineData(6)]
    public void DdimUniformTakesTimesteps1PlusMultiplesOfTheStride(int steps)
    {
        int stride = 1000 / steps;
        var ts = new List<int>();
        for (int t = 1; t < 1000; t += stride) ts.Add(t);
        var expected = ts.AsEnumerable().Reverse().Select(t => Grid[t]).Append(0f).ToArray();
        Assert.Equal(expected, Schedulers.Compute("ddim_uniform", S, steps));
    }

    [SkippableFact]
    public void DdimUniformLiteralGrids()
    {
        int[] ten = [901, 801, 701, 601, 501, 401, 301, 201, 101, 1];
        Assert.Equal(ten.Select(t => Grid[t]).Append(0f), Schedulers.Compute("ddim_uniform", S, 10));
        // stride 166 fits seven times below 1000: 7 steps for 6, as ComfyUI and A1111 do
        int[] six = [997, 831, 665, 499, 333, 167, 1];
        Assert.Equal(six.Select(t => Grid[t]).Append(0f), Schedulers.Compute("ddim_uniform", S, 6));
    }

    public static TheoryData<string, int> AllSchedules()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in Schedulers.Names)
            foreach (int steps in new[] { 1, 2, 5, 30 })
                data.Add(name, steps);
        return data;
    }

    [SkippableTheory, MemberData(nameof(AllSchedules))]
    public void EverySchedulerDecreasesStrictlyToZero(string name, int steps)
    {
        var sigmas = Schedulers.Compute(name, S, steps);
        if (name != "ddim_uniform") Assert.Equal(steps + 1, sigmas.Length);
        Assert.Equal(0f, sigmas[^1]);
        Assert.True(sigmas[0] <= S.SigmaMax * (1 + 1e-6), $"{name}: starts above sigma_max");
        for (int i = 0; i + 1 < sigmas.Length; i++)
            Assert.True(sigmas[i] > sigmas[i + 1], $"{name}({steps}): sigma {i} = {sigmas[i]} <= next {sigmas[i + 1]}");
        Assert.True(sigmas[^2] >= S.SigmaMin * (1 - 1e-6), $"{name}: last nonzero sigma below sigma_min");
    }

    [SkippableTheory]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(30)]
    public void KarrasRunsFromSigmaMaxToSigmaMinEvenInSigmaToTheOneSeventh(int steps)
    {
        var k = Schedulers.Compute("karras", S, steps);
        AssertClose(S.SigmaMax, k[0], 1e-6, "first");
        AssertClose(S.SigmaMin, k[steps - 1], 1e-6, "last nonzero");
        double a = Math.Pow(S.SigmaMax, 1 / 7.0), b = Math.Pow(S.SigmaMin, 1 / 7.0);
        for (int i = 0; i < steps; i++)
            AssertClose(Math.Pow(a + (b - a) * i / (steps - 1), 7), k[i], 1e-5, $"karras({steps})[{i}]");
    }

    [SkippableTheory]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(30)]
    public void ExponentialHasAConstantRatioFromSigmaMaxToSigmaMin(int steps)
    {
        var e = Schedulers.Compute("exponential", S, steps);
        AssertClose(S.SigmaMax, e[0], 1e-6, "first");
        AssertClose(S.SigmaMin, e[steps - 1], 1e-6, "last nonzero");
        double ratio = Math.Pow((double)S.SigmaMax / S.SigmaMin, 1.0 / (steps - 1));
        for (int i = 0; i + 2 < e.Length; i++) AssertClose(ratio, (double)e[i] / e[i + 1], 1e-5, $"ratio {i}");
    }

    [SkippableFact]
    public void OneStepOfKarrasOrExponentialIsSigmaMaxThenZero()
    {
        foreach (var name in new[] { "karras", "exponential" })
        {
            var sigmas = Schedulers.Compute(name, S, 1);
            Assert.Equal(2, sigmas.Length);
            AssertClose(S.SigmaMax, sigmas[0], 1e-6, name);
            Assert.Equal(0f, sigmas[1]);
        }
    }

    [SkippableTheory]
    [InlineData("normal", 6, 0.8, 7)]
    [InlineData("karras", 6, 0.8, 7)]
    [InlineData("karras", 10, 0.5, 20)]
    [InlineData("simple", 4, 0.3, 13)]
    [InlineData("normal", 7, 0.28, 24)] // 7 / 0.28 = 24.999999999999996 in binary: int() truncates
    public void DenoiseRunsTheLastStepsOfALongerSchedule(string name, int steps, double denoise, int total)
    {
        var full = Schedulers.Compute(name, S, total);
        var got = Schedulers.ForDenoise(name, S, steps, denoise);
        Assert.Equal(full[^(steps + 1)..], got);
        Assert.Equal(steps + 1, got.Length);
        Assert.True(got[0] < S.SigmaMax);
    }

    [SkippableFact]
    public void FullDenoiseIsTheWholeScheduleAndBadArgumentsAreUserErrors()
    {
        Assert.Equal(Schedulers.Compute("karras", S, 9), Schedulers.ForDenoise("karras", S, 9, 1));
        Assert.Throws<UserErrorException>(() => Schedulers.ForDenoise("karras", S, 9, 0));
        Assert.Throws<UserErrorException>(() => Schedulers.ForDenoise("karras", S, 9, 1.5));
        Assert.Throws<UserErrorException>(() => Schedulers.ForDenoise("karras", S, 0, 0.5));
        Assert.Throws<UserErrorException>(() => Schedulers.Compute("beta", S, 9));
    }

    [SkippableFact]
    public void TimestepOfEveryTrainingSigmaIsItsIndexAndBack()
    {
        for (int t = 0; t < 1000; t++)
        {
            Assert.Equal(t, S.Timestep(Grid[t]));
            AssertClose(Grid[t], S.Sigma(t), 5e-7, $"sigma({t})");
        }
    }

    [SkippableTheory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(250)]
    [InlineData(600)]
    [InlineData(998)]
    public void SigmaInterpolatesLogLinearlyAndTimestepRoundsInLogSpace(int t)
    {
        double lo = Grid[t], hi = Grid[t + 1];
        foreach (double w in new[] { 0.25, 0.5, 0.8 })
            AssertClose(Math.Pow(lo, 1 - w) * Math.Pow(hi, w), S.Sigma((float)(t + w)), 1e-6, $"sigma({t}+{w})");
        double mid = Math.Sqrt(lo * hi); // the log-space midpoint decides
        Assert.Equal(t, S.Timestep((float)(mid * 0.9999)));
        Assert.Equal(t + 1, S.Timestep((float)(mid * 1.0001)));
        Assert.Equal(t, S.Timestep(S.Sigma(t + 0.3f)));
        Assert.Equal(t + 1, S.Timestep(S.Sigma(t + 0.7f)));
    }

    [SkippableFact]
    public void OutOfRangeClampsToTheEnds()
    {
        Assert.Equal(S.Sigma(0), S.Sigma(-3));
        Assert.Equal(S.Sigma(999), S.Sigma(5000));
        Assert.Equal(999, S.Timestep(1000f));
        Assert.Equal(0, S.Timestep(1e-5f));
    }
}
