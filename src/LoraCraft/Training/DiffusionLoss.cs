using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Training;

/// <summary>kohya's `--loss_type`.</summary>
public enum LossType { L2, L1, Huber, SmoothL1 }

/// <summary>
/// DDPM training as diffusers' DDPMScheduler defines it for SD (scaled-linear betas 0.00085..0.012,
/// 1000 steps, alphas_cumprod in float64 here): noisy = sqrt(ac) x0 + sqrt(1-ac) noise, the
/// target (noise, or v = sqrt(ac) noise - sqrt(1-ac) x0), SNR = ac / (1 - ac), and kohya's loss
/// shaping: per-sample mean, loss weight (prior loss), min-SNR-gamma.
/// </summary>
public sealed class DiffusionLoss
{
    public const int TrainSteps = 1000;
    readonly double[] _alphasCumprod = new double[TrainSteps];

    public DiffusionLoss()
    {
        double a = Math.Sqrt(0.00085), b = Math.Sqrt(0.012), cumprod = 1;
        for (int i = 0; i < TrainSteps; i++)
        {
            double s = a + (b - a) * i / (TrainSteps - 1);
            cumprod *= 1 - s * s;
            _alphasCumprod[i] = cumprod;
        }
    }

    public double AlphaCumprod(int t) => _alphasCumprod[t];
    public double Snr(int t) => _alphasCumprod[t] / (1 - _alphasCumprod[t]);

    Tensor Column(int[] t, Func<int, double> f, Tensor like) =>
        torch.tensor(t.Select(f).ToArray(), ScalarType.Float64).to(ScalarType.Float32).view(-1, 1, 1, 1).to(like.device);

    public Tensor AddNoise(Tensor latents, Tensor noise, int[] t)
    {
        using var scope = NewDisposeScope();
        var s = Column(t, i => Math.Sqrt(_alphasCumprod[i]), latents);
        var n = Column(t, i => Math.Sqrt(1 - _alphasCumprod[i]), latents);
        return (latents * s).Add(noise * n).MoveToOuterDisposeScope();
    }

    public Tensor Velocity(Tensor latents, Tensor noise, int[] t)
    {
        using var scope = NewDisposeScope();
        var s = Column(t, i => Math.Sqrt(_alphasCumprod[i]), latents);
        var n = Column(t, i => Math.Sqrt(1 - _alphasCumprod[i]), latents);
        return (noise * s - latents * n).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The batch loss: elementwise loss of prediction vs target (float32), mean per sample, times
    /// each sample's weight, times the min-SNR weight min(snr, γ)/snr (v: /(snr + 1)), then the mean.
    /// </summary>
    public Tensor Loss(Tensor prediction, Tensor target, int[] t, double[] weights, TrainingLossOptions o, Prediction kind)
    {
        using var scope = NewDisposeScope();
        var p = prediction.to(ScalarType.Float32);
        var y = target.to(ScalarType.Float32);
        Tensor elementwise;
        switch (o.Type)
        {
            case LossType.L2:
                var diff = p - y;
                elementwise = diff * diff;
                break;
            case LossType.L1:
                elementwise = (p - y).abs();
                break;
            default:
                var c = Column(t, i => HuberC(i, o), p);
                var d = p - y;
                var root = torch.sqrt((d * d).Add(c * c)) - c;
                elementwise = o.Type == LossType.Huber ? root * c.Mul(2) : root.Mul(2);
                break;
        }
        var perSample = elementwise.mean([1, 2, 3]);
        perSample = perSample * torch.tensor(weights.Select(w => (float)w).ToArray()).to(perSample.device);
        if (o.MinSnrGamma is { } gamma)
        {
            var snrWeight = torch.tensor(t.Select(i =>
            {
                double snr = Snr(i);
                return (float)(Math.Min(snr, gamma) / (kind == Prediction.V ? snr + 1 : snr));
            }).ToArray()).to(perSample.device);
            perSample = perSample * snrWeight;
        }
        return perSample.mean().MoveToOuterDisposeScope();
    }

    /// <summary>kohya's scheduled Huber parameter (`--huber_schedule`, `--huber_c`, `--huber_scale`).</summary>
    double HuberC(int t, TrainingLossOptions o) => o.HuberSchedule switch
    {
        "constant" => o.HuberC * o.HuberScale,
        "exponential" => Math.Exp(-(-Math.Log(o.HuberC) / TrainSteps) * t) * o.HuberScale,
        _ => ((1 - o.HuberC) / Math.Pow(1 + Math.Sqrt((1 - _alphasCumprod[t]) / _alphasCumprod[t]), 2) + o.HuberC) * o.HuberScale,
    };
}

/// <summary>Loss shaping options (kohya names): type, min-SNR gamma, Huber schedule.</summary>
public sealed record TrainingLossOptions
{
    public LossType Type { get; init; } = LossType.L2;
    public double? MinSnrGamma { get; init; }
    public string HuberSchedule { get; init; } = "snr";
    public double HuberC { get; init; } = 0.1;
    public double HuberScale { get; init; } = 1;
}
