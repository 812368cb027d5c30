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
        if (request.Mask is not null && CropAndStitch.MaskBounds(request.Mask) is null)
            throw new UserErrorException(CropAndStitch.EmptyMask);
        ctx ??= new SamplerContext();
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var schedule = NoiseSchedule.Default;
        var sigmas = request.ScheduleSteps is int total && request.InitImage is not null
            ? Schedulers.Compute(request.Scheduler, schedule, total)[^(Math.Min(request.Steps, total) + 1)..]
            : Schedulers.ForDenoise(request.Scheduler, schedule, request.Steps, request.InitImage is null ? 1 : request.Denoise);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var guidance = Guidance.Prepare(model, request);
        double textSeconds = clock.Elapsed.TotalSeconds;
        long h = request.Height / 8, w = request.Width / 8;
        var latentShape = new long[] { 1, model.UNet.Config.OutChannels, h, w };

        // the latent we start from: zeros for txt2img, the encoded init image otherwise
        var latent = request.InitImage is null ? zeros(latentShape) : EncodeImage(model, request.InitImage, request.VaeTiling);
        Tensor? latentMask = null, fillMask = null;
        InpaintConcat? concat = null;
        if (model.Inpainting && request.Mask is null)
        {
            // an inpainting model without a mask (txt2img, plain img2img): everything is to be
            // painted over a grey picture, as A1111's and ComfyUI's blank inpaint conditioning
            using var grey = TensorMath.Full([1, 3, request.Height, request.Width], 0.5);
            using var everything = ones(1, 1, request.Height, request.Width);
            concat = InpaintConcat.Prepare(model, grey, everything, h, w);
        }
        if (request.Mask is not null)
        {
            if (model.Inpainting) concat = InpaintConcat.Prepare(model, request.InitImage!, request.Mask, h, w);
            else latentMask = LatentSampler.MaskToLatent(request.Mask, h, w);
            // A1111's masked-content fills need the latent mask even for inpainting models
            if (request.MaskedLatent != MaskedLatentFill.Original) fillMask = latentMask ?? LatentSampler.MaskToLatent(request.Mask, h, w);
        }

        double samplingStart = clock.Elapsed.TotalSeconds;
        var sampled = LatentSampler.Sample(model, guidance, new LatentSampling
        {
            Latent = latent, Sigmas = sigmas, Sampler = request.Sampler, Seed = request.Seed, Noise = request.Noise,
            NoiseConvention = request.NoiseConvention, Subseed = request.Subseed, SubseedStrength = request.SubseedStrength,
            NoiseMask = latentMask, FillMask = fillMask, MaskedLatent = request.MaskedLatent, Concat = concat,
        }, ctx);
        var final = sampled.Latent;
        bool partial = sampled.Partial;
        Runtime.Compute.ReleaseFreedMemory();
        double decodeStart = clock.Elapsed.TotalSeconds;
        var image = DecodeLatent(model, final, request.VaeTiling);
        var timings = new GenerationTimings(textSeconds, decodeStart - samplingStart, clock.Elapsed.TotalSeconds - decodeStart);
        return new GenerationResult(final.MoveToOuterDisposeScope(), image.MoveToOuterDisposeScope(), sigmas, timings) { Prompts = guidance.Timeline, Partial = partial };
    }

    /// <summary>Image [1,3,H,W] in [0,1] -> scaled latent (mode of the VAE's distribution).</summary>
    public static Tensor EncodeImage(StableDiffusionModel model, Tensor image, VaeTilingMode tiling = VaeTilingMode.Auto)
    {
        using var scope = NewDisposeScope();
        var pixels = image.to(ScalarType.Float32).Mul(2).Sub(1);
        var mean = VaeTiling.ShouldTile(tiling, image.shape[2] / 8, image.shape[3] / 8)
            ? VaeTiling.EncodeMean(model.Vae, pixels)
            : model.Vae.Encode(pixels).Mean;
        return mean.Mul(model.LatentScale).MoveToOuterDisposeScope();
    }

    /// <summary>Scaled latent -> image [1,3,H,W] clamped to [0,1].</summary>
    public static Tensor DecodeLatent(StableDiffusionModel model, Tensor latent, VaeTilingMode tiling = VaeTilingMode.Auto)
    {
        using var scope = NewDisposeScope();
        var z = latent.Div(model.LatentScale);
        var decoded = VaeTiling.ShouldTile(tiling, latent.shape[2], latent.shape[3]) ? VaeTiling.Decode(model.Vae, z) : model.Vae.Decode(z);
        return decoded.Add(1).Div(2).Clamp(0, 1).MoveToOuterDisposeScope();
    }
}

/// <summary>The extra UNet input of 9-channel inpainting models: the latent mask and the masked image's latent.</summary>
public sealed record InpaintConcat(Tensor Mask, Tensor MaskedLatent)
{
    public static InpaintConcat Prepare(StableDiffusionModel model, Tensor image, Tensor mask, long h, long w)
    {
        var pixelMask = mask.to(ScalarType.Float32).round();
        var masked = (image.to(ScalarType.Float32) * pixelMask.RSub(1)).Add(pixelMask.Mul(0.5));
        var latentMask = F.interpolate(mask.to(ScalarType.Float32), size: [h, w], mode: InterpolationMode.Bilinear, align_corners: false).round();
        return new InpaintConcat(latentMask, StableDiffusionPipeline.EncodeImage(model, masked));
    }

    public Tensor Concat(Tensor scaledX) => torch.cat([scaledX, Mask.expand(scaledX.shape[0], -1, -1, -1), MaskedLatent.expand(scaledX.shape[0], -1, -1, -1)], 1);
}
