using LoraCraft.Training;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Training;

public class OptimizerTests
{
    [Fact]
    public void AdamWStepMatchesTheClosedForm()
    {
        double[] p0 = [0.5, -1.25, 3.0];
        double[][] grads = [[0.1, -2.0, 0.003], [0.4, 1.5, -0.002], [-0.3, 0.5, 0.001], [0.2, -0.25, 0.0]];
        var s = new AdamWSettings();
        using var p = tensor(p0, ScalarType.Float64).requires_grad_(true);
        using var opt = new AdamW([new ParameterGroup("g", [p], 0.01)], s);
        double[] lrScale = [1, 0.5, 0.25, 1];
        for (int step = 0; step < grads.Length; step++)
        {
            using (var g = tensor(grads[step], ScalarType.Float64)) p.grad = g.clone();
            opt.Step(lrScale[step]);
        }
        for (int i = 0; i < p0.Length; i++)
        {
            // torch.optim.AdamW written out in double, with the schedule's rate at each step
            double pp = p0[i], m = 0, v = 0;
            for (int t = 1; t <= grads.Length; t++)
            {
                double lr = 0.01 * lrScale[t - 1], g = grads[t - 1][i];
                pp *= 1 - lr * s.WeightDecay;
                m = s.Beta1 * m + (1 - s.Beta1) * g;
                v = s.Beta2 * v + (1 - s.Beta2) * g * g;
                pp -= lr / (1 - Math.Pow(s.Beta1, t)) * m / (Math.Sqrt(v) / Math.Sqrt(1 - Math.Pow(s.Beta2, t)) + s.Eps);
            }
            Assert.Equal(pp, p[i].item<double>(), 12);
        }
        Assert.Equal(4, opt.StepCount);
    }

    [Fact]
    public void EightBitStateStaysCloseToFloat32AdamW()
    {
        using var g = new Generator(11);
        using var target = randn([600], generator: g);
        using var a = zeros(600).requires_grad_(true);
        using var b = zeros(600).requires_grad_(true);
        using var full = new AdamW([new ParameterGroup("g", [a], 0.05)]);
        using var eight = new AdamW8bit([new ParameterGroup("g", [b], 0.05)]);
        for (int step = 0; step < 40; step++)
        {
            foreach (var (p, o) in new (Tensor, Optimizer)[] { (a, full), (b, eight) })
            {
                using var loss = (p - target).pow(2).sum();
                loss.backward();
                o.Step(1);
                o.ZeroGrad();
            }
        }
        using var diff = (a - b).norm();
        using var scale = (a - 0).norm();
        double rel = diff.item<float>() / scale.item<float>();
        Assert.True(rel < 0.05, $"8-bit AdamW drifted {rel:P2} from float32 AdamW");
        // both moved towards the target
        using var errB = (b - target).norm();
        using var start = target.norm();
        Assert.True(errB.item<float>() < 0.5 * start.item<float>());
        // one byte per value plus one float per 256
        var state = eight.State();
        Assert.Equal(ScalarType.Byte, state["g.0.exp_avg.codes"].dtype);
        Assert.Equal(3, state["g.0.exp_avg.absmax"].shape[0]);
    }

    [Fact]
    public void QuantizationRoundTripKeepsRelativeErrorSmall()
    {
        using var g = new Generator(2);
        using var x = randn([1000], generator: g) * 1e-3;
        using var map = AdamW8bit.CodeBook(signed: true);
        using var mid = (map[1..] + map[..^1]) / 2;
        var (codes, max) = AdamW8bit.Quantize(x, mid);
        using var back = AdamW8bit.Dequantize(codes, max, map, [1000]);
        using var big = x.abs() > 1e-5;
        using var rel = ((back - x).abs() / x.abs()).masked_select(big).max();
        Assert.True(rel.item<float>() < 0.08, $"max relative error {rel.item<float>()}");
        codes.Dispose();
        max.Dispose();
    }

    [Fact]
    public void ClipGradNormScalesToTheLimit()
    {
        using var p = zeros(2).requires_grad_(true);
        p.grad = tensor(new float[] { 3, 4 });
        double norm = Optimizer.ClipGradNorm([p], 1.0);
        Assert.Equal(5, norm, 5);
        Assert.Equal(0.6, p.grad!.data<float>()[0], 5);
        Assert.Equal(0.8, p.grad!.data<float>()[1], 5);
    }

    [Theory]
    [InlineData("constant", 0, 0, 1.0)]
    [InlineData("constant_with_warmup", 10, 5, 0.5)]
    [InlineData("constant_with_warmup", 10, 50, 1.0)]
    [InlineData("linear", 10, 55, 0.5)]
    [InlineData("cosine", 0, 50, 0.5)]
    [InlineData("cosine", 0, 100, 0.0)]
    [InlineData("cosine_with_restarts", 0, 25, 0.5)]
    [InlineData("polynomial", 0, 50, 0.5)]
    public void ScheduleFactorsAreDiffusers(string name, int warmup, int step, double expected)
    {
        var s = new LearningRateSchedule(name, warmup, 100, Cycles: 2);
        s.Validate();
        Assert.Equal(expected, s.Factor(step), 9);
    }

    [Fact]
    public void ConstantSchedulerRefusesWarmup() =>
        Assert.Throws<UserErrorException>(() => new LearningRateSchedule("constant", 5, 100).Validate());
}
