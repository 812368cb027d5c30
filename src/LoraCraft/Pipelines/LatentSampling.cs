using LoraCraft.Models;
using LoraCraft.Sampling;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Pipelines;

/// <summary>
/// One sampler run on a latent that is already there (ComfyUI's KSampler): the start latent,
/// the sigmas, the seed's noise and an optional noise mask. <see cref="StableDiffusionPipeline"/>
/// builds one of these for every generation, so the KSampler node and the CLI sample the same way.
/// </summary>
public sealed record LatentSampling
{
    /// <summary>The latent to start from, [B,C,h,w] in model space: zeros for txt2img, an encoded image otherwise.</summary>
    public required Tensor Latent { get; init; }
    public required float[] Sigmas { get; init; }
    public string Sampler { get; init; } = "euler";
    public ulong Seed { get; init; }
    public RandomSource Noise { get; init; } = RandomSource.Cpu;
    public NoiseConvention NoiseConvention { get; init; } = NoiseConvention.ComfyUI;
    public ulong Subseed { get; init; }
    public double SubseedStrength { get; init; }
    /// <summary>False: no initial noise is added (KSamplerAdvanced's add_noise disable).</summary>
    public bool AddNoise { get; init; } = true;
    /// <summary>Where to denoise, [1 or B,1,h,w] at the latent's size (1 = denoise, 0 = keep the start latent); null: everywhere.</summary>
    public Tensor? NoiseMask { get; init; }
    /// <summary>What the masked latent starts from (A1111's "masked content").</summary>
    public MaskedLatentFill MaskedLatent { get; init; } = MaskedLatentFill.Original;
    /// <summary>Where <see cref="MaskedLatent"/> fills, at the latent's size; null: the noise mask.</summary>
    public Tensor? FillMask { get; init; }
    /// <summary>The 9-channel inpainting model's extra input.</summary>
    public InpaintConcat? Concat { get; init; }
}

/// <summary>The sampled latent (model space) and whether sampling stopped early.</summary>
public sealed record SampledLatent(Tensor Latent, bool Partial) : IDisposable
{
    public void Dispose() => Latent.Dispose();
}

public static class LatentSampler
{
    /// <summary>
    /// Samples <see cref="LatentSampling.Latent"/> with <paramref name="guidance"/>, one batch item
    /// after another: item i gets item i of the noise drawn for the whole batch (as ComfyUI draws
    /// it), so a batch of one is exactly the pipeline's image and larger batches match ComfyUI's noise.
    /// </summary>
    public static SampledLatent Sample(StableDiffusionModel model, IGuidance guidance, LatentSampling s, SamplerContext? ctx = null)
    {
        ctx ??= new SamplerContext();
        SamplerRegistry.RequireSampler(s.Sampler);
        if (s.Sigmas.Length < 2) throw new UserErrorException("nothing to sample: the schedule has no steps");
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var latent = s.Latent.to(ScalarType.Float32);
        long batch = latent.shape[0];
        var shape = latent.shape;
        var results = new List<Tensor>();
        bool partial = false;
        using (var seedNoise = SeedNoise.Create(shape, s.Seed, s.Noise, s.NoiseConvention, s.Subseed, s.SubseedStrength))
        {
            for (long i = 0; i < batch; i++)
            {
                long index = i;
                var one = latent.narrow(0, i, 1);
                var noise = s.AddNoise ? seedNoise.Initial.narrow(0, i, 1) : zeros_like(one);
                NoiseSource ancestral = batch == 1 ? seedNoise.NextAncestral : () => NextSlice(seedNoise, index);
                var mask = Item(s.NoiseMask, i);
                var fill = Item(s.FillMask ?? s.NoiseMask, i);
                guidance.BeginItem(i, s.Sigmas);
                var (final, stopped) = SampleOne(model, guidance, s, one, noise, ancestral, mask, fill, ctx);
                results.Add(final);
                partial |= stopped;
                if (stopped) break;
            }
        }
        var output = results.Count == 1 ? results[0] : torch.cat(results, 0);
        return new SampledLatent(output.MoveToOuterDisposeScope(), partial);
    }

    static Tensor? Item(Tensor? t, long i) => t?.narrow(0, Math.Min(i, t.shape[0] - 1), 1).to(ScalarType.Float32);

    static Tensor NextSlice(SeedNoise noise, long index)
    {
        using var all = noise.NextAncestral();
        return all.narrow(0, index, 1).clone();
    }

    static (Tensor Final, bool Partial) SampleOne(StableDiffusionModel model, IGuidance guidance, LatentSampling s, Tensor latent, Tensor noise,
                                                  NoiseSource ancestral, Tensor? latentMask, Tensor? fillMask, SamplerContext ctx)
    {
        var schedule = NoiseSchedule.Default;
        var sigmas = s.Sigmas;
        if (fillMask is not null && s.MaskedLatent != MaskedLatentFill.Original)
        {
            // A1111's "latent noise" / "latent nothing": the masked latent starts from noise or zeros
            var fill = s.MaskedLatent == MaskedLatentFill.Noise ? noise : zeros_like(latent);
            latent = (latent * fillMask.RSub(1)).Add(fill * fillMask);
        }

        float sigma0 = sigmas[0];
        bool fullDenoise = Math.Abs(schedule.SigmaMax - sigma0) <= 1e-5 * Math.Max(Math.Abs(schedule.SigmaMax), Math.Abs(sigma0)) || sigma0 > schedule.SigmaMax;
        // ComfyUI scales a full denoise's noise by sqrt(1 + sigma^2), A1111 by sigma (its sgm_noise_multiplier off)
        bool a1111 = s.NoiseConvention == NoiseConvention.A1111;
        var x = noise.Mul(fullDenoise && !a1111 ? Math.Sqrt(1 + (double)sigma0 * sigma0) : sigma0).Add(latent);

        int firstStep = ctx.CompletedSteps; // prompt editing and per-step LoRA strengths use the current sampling step
        int steps = sigmas.Length - 1;
        var concat = s.Concat;
        Denoiser denoiser = (xt, sigma) =>
        {
            ctx.BeforeModelCall?.Invoke(ctx.CompletedSteps - firstStep, steps);
            using var inner = NewDisposeScope();
            var xin = xt;
            if (latentMask is not null)
                xin = (xt * latentMask).Add(latent.Add(noise.Mul(sigma)) * latentMask.RSub(1));
            var denoised = guidance.Denoise(xin, sigma, schedule, concat, ctx.CompletedSteps - firstStep + 1);
            if (latentMask is not null)
                denoised = (denoised * latentMask).Add(latent * latentMask.RSub(1));
            return denoised.MoveToOuterDisposeScope();
        };

        try
        {
            return (Samplers.Sample(s.Sampler, denoiser, x, sigmas, ancestral, ctx), false);
        }
        catch (SamplingStoppedException stopped)
        {
            // skip / interrupt: the last step's denoised estimate is the picture so far (A1111 does the same)
            return (stopped.LastDenoised, true);
        }
    }

    /// <summary>A pixel mask [B,1,H,W] at the latent's size (bilinear, as both ComfyUI and the pipeline resize it).</summary>
    public static Tensor MaskToLatent(Tensor mask, long h, long w) =>
        F.interpolate(mask.to(ScalarType.Float32), size: [h, w], mode: InterpolationMode.Bilinear, align_corners: false);
}
