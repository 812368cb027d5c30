using LoraCraft.Models;
using LoraCraft.Models.Vae;
using LoraCraft.Sampling;
using LoraCraft.Text;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Pipelines;

/// <summary>
/// txt2img, img2img and inpainting (latent noise mask for plain models, masked-image
/// conditioning for 9-channel inpainting models), with ComfyUI's conventions on CPU.
/// </summary>
public static class StableDiffusionPipeline
{
    public static GenerationResult Generate(StableDiffusionModel model, GenerationRequest request, SamplerContext? ctx = null)
    {
        request.Validate();
        ctx ??= new SamplerContext();
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var schedule = NoiseSchedule.Default;
        var sigmas = Schedulers.ForDenoise(request.Scheduler, schedule, request.Steps, request.InitImage is null ? 1 : request.Denoise);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var guidance = Guidance.Prepare(model, request);
        double textSeconds = clock.Elapsed.TotalSeconds;
        long h = request.Height / 8, w = request.Width / 8;
        var latentShape = new long[] { 1, model.UNet.Config.OutChannels, h, w };

        // the latent we start from: zeros for txt2img, the encoded init image otherwise
        var latent = request.InitImage is null ? zeros(latentShape) : EncodeImage(model, request.InitImage, request.VaeTiling);
        Tensor? latentMask = null;
        InpaintConcat? concat = null;
        if (request.Mask is not null)
        {
            if (model.Inpainting) concat = InpaintConcat.Prepare(model, request.InitImage!, request.Mask, h, w);
            else latentMask = F.interpolate(request.Mask.to(ScalarType.Float32), size: [h, w], mode: InterpolationMode.Bilinear, align_corners: false);
        }

        using var noiseGen = new torch.Generator((ulong)request.Seed);
        var noise = randn(latentShape, generator: noiseGen);
        using var ancestralGen = new torch.Generator((ulong)(request.Seed + 1));
        NoiseSource ancestral = () => randn(latentShape, generator: ancestralGen);

        float sigma0 = sigmas[0];
        bool fullDenoise = Math.Abs(schedule.SigmaMax - sigma0) <= 1e-5 * Math.Max(Math.Abs(schedule.SigmaMax), Math.Abs(sigma0)) || sigma0 > schedule.SigmaMax;
        var x = noise * (fullDenoise ? Math.Sqrt(1 + (double)sigma0 * sigma0) : sigma0) + latent;

        // the step a model call belongs to, for per-step LoRA strengths: the steps finished so far
        int step = 0, steps = sigmas.Length - 1;
        if (ctx.BeforeModelCall is not null) ctx = ctx with { Progress = new StepCounter(ctx.Progress, i => step = i) };
        Denoiser denoiser = (xt, sigma) =>
        {
            ctx.BeforeModelCall?.Invoke(step, steps);
            using var inner = NewDisposeScope();
            var xin = xt;
            if (latentMask is not null)
                xin = xt * latentMask + (latent + noise * sigma) * (1 - latentMask);
            var denoised = guidance.Denoise(xin, sigma, schedule, concat);
            if (latentMask is not null)
                denoised = denoised * latentMask + latent * (1 - latentMask);
            return denoised.MoveToOuterDisposeScope();
        };

        double samplingStart = clock.Elapsed.TotalSeconds;
        var final = Samplers.Sample(request.Sampler, denoiser, x, sigmas, ancestral, ctx);
        Runtime.Compute.ReleaseFreedMemory();
        double decodeStart = clock.Elapsed.TotalSeconds;
        var image = DecodeLatent(model, final, request.VaeTiling);
        var timings = new GenerationTimings(textSeconds, decodeStart - samplingStart, clock.Elapsed.TotalSeconds - decodeStart);
        return new GenerationResult(final.MoveToOuterDisposeScope(), image.MoveToOuterDisposeScope(), sigmas, timings);
    }

    /// <summary>Image [1,3,H,W] in [0,1] -> scaled latent (mode of the VAE's distribution).</summary>
    public static Tensor EncodeImage(StableDiffusionModel model, Tensor image, VaeTilingMode tiling = VaeTilingMode.Auto)
    {
        using var scope = NewDisposeScope();
        var pixels = image.to(ScalarType.Float32) * 2 - 1;
        var mean = VaeTiling.ShouldTile(tiling, image.shape[2] / 8, image.shape[3] / 8)
            ? VaeTiling.EncodeMean(model.Vae, pixels)
            : model.Vae.Encode(pixels).Mean;
        return (mean * model.LatentScale).MoveToOuterDisposeScope();
    }

    /// <summary>Scaled latent -> image [1,3,H,W] clamped to [0,1].</summary>
    public static Tensor DecodeLatent(StableDiffusionModel model, Tensor latent, VaeTilingMode tiling = VaeTilingMode.Auto)
    {
        using var scope = NewDisposeScope();
        var z = latent / model.LatentScale;
        var decoded = VaeTiling.ShouldTile(tiling, latent.shape[2], latent.shape[3]) ? VaeTiling.Decode(model.Vae, z) : model.Vae.Decode(z);
        return ((decoded + 1) / 2).clamp(0, 1).MoveToOuterDisposeScope();
    }
}

/// <summary>Passes step reports on and remembers how many steps are done (synchronously, unlike Progress&lt;T&gt;).</summary>
sealed class StepCounter(IProgress<SamplerStep>? inner, Action<int> done) : IProgress<SamplerStep>
{
    public void Report(SamplerStep value)
    {
        done(value.Index);
        inner?.Report(value);
    }
}

/// <summary>The extra UNet input of 9-channel inpainting models: the latent mask and the masked image's latent.</summary>
public sealed record InpaintConcat(Tensor Mask, Tensor MaskedLatent)
{
    public static InpaintConcat Prepare(StableDiffusionModel model, Tensor image, Tensor mask, long h, long w)
    {
        var pixelMask = mask.to(ScalarType.Float32).round();
        var masked = image.to(ScalarType.Float32) * (1 - pixelMask) + 0.5 * pixelMask;
        var latentMask = F.interpolate(mask.to(ScalarType.Float32), size: [h, w], mode: InterpolationMode.Bilinear, align_corners: false).round();
        return new InpaintConcat(latentMask, StableDiffusionPipeline.EncodeImage(model, masked));
    }

    public Tensor Concat(Tensor scaledX) => torch.cat([scaledX, Mask.expand(scaledX.shape[0], -1, -1, -1), MaskedLatent.expand(scaledX.shape[0], -1, -1, -1)], 1);
}
