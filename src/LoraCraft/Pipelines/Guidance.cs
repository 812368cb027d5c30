using LoraCraft.Models;
using LoraCraft.Sampling;
using LoraCraft.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Pipelines;

/// <summary>
/// The guided model call: conditional and unconditional predictions in one batch, turned into
/// denoised estimates (eps or v) and mixed by classifier-free guidance. cfg 1 skips the
/// unconditional half. Text conditioning is computed once here, never per step.
/// </summary>
public sealed class Guidance
{
    readonly StableDiffusionModel _model;
    readonly double _cfg;
    readonly Tensor _context;   // [2 or 1, T, D]: cond first
    readonly Tensor? _y;        // SDXL vector, same batch order

    Guidance(StableDiffusionModel model, double cfg, Tensor context, Tensor? y)
    {
        _model = model;
        _cfg = cfg;
        _context = context;
        _y = y;
    }

    public static Guidance Prepare(StableDiffusionModel model, GenerationRequest request)
    {
        bool useUncond = request.Cfg != 1;
        var cond = TextConditioner.Encode(model, request.Prompt, request.ClipSkip);
        var uncond = useUncond ? TextConditioner.Encode(model, request.Negative, request.ClipSkip) : null;
        var contexts = uncond is null ? [cond.Context] : MatchLengths(cond.Context, uncond.Context);
        var context = torch.cat(contexts, 0);
        Tensor? y = null;
        if (model.Family == ModelFamily.Sdxl)
        {
            // original size, crop (0, 0), target size: all the generated size
            var ids = torch.tensor(new float[] { request.Height, request.Width, 0, 0, request.Height, request.Width }).unsqueeze(0);
            var pooled = uncond is null ? cond.Pooled! : torch.cat([cond.Pooled!, uncond.Pooled!], 0);
            y = model.UNet.SdxlVector(pooled, ids.expand(pooled.shape[0], -1));
        }
        // converted once to the UNet's dtype and device, so its per-step conversions are no-ops
        return new Guidance(model, request.Cfg, context.to(model.DType, model.UNet.Device), y?.to(model.DType, model.UNet.Device));
    }

    /// <summary>Repeats the shorter context so both halves of the batch have the same token count.</summary>
    static Tensor[] MatchLengths(Tensor a, Tensor b)
    {
        long la = a.shape[1], lb = b.shape[1];
        if (la == lb) return [a, b];
        long lcm = la / Gcd(la, lb) * lb;
        return [a.repeat(1, lcm / la, 1), b.repeat(1, lcm / lb, 1)];
        static long Gcd(long x, long y) => y == 0 ? x : Gcd(y, x % y);
    }

    public Tensor Denoise(Tensor x, float sigma, NoiseSchedule schedule, InpaintConcat? concat)
    {
        using var scope = NewDisposeScope();
        long batch = _context.shape[0];
        double s = sigma;
        var xb = batch == 1 ? x : x.expand(batch, -1, -1, -1);
        var input = xb.Mul(1 / Math.Sqrt(s * s + 1));
        if (concat is not null) input = concat.Concat(input);
        var t = TensorMath.Full([batch], (float)schedule.Timestep(sigma));
        var output = _model.UNet.Forward(input, t, _context, _y);
        var denoised = _model.Prediction == Prediction.V
            ? xb.Mul(1 / (s * s + 1)) - output.Mul(s / Math.Sqrt(s * s + 1))
            : xb - output.Mul(s);
        if (batch == 1) return denoised.MoveToOuterDisposeScope();
        var halves = denoised.chunk(2, 0);
        var guided = halves[1].Add((halves[0] - halves[1]).Mul(_cfg));
        return guided.MoveToOuterDisposeScope();
    }
}
