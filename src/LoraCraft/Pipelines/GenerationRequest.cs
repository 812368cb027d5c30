using static TorchSharp.torch;

namespace LoraCraft.Pipelines;

/// <summary>Everything that decides an image, as A1111/ComfyUI users know the settings.</summary>
public sealed record GenerationRequest
{
    public string Prompt { get; init; } = "";
    public string Negative { get; init; } = "";
    public long Seed { get; init; }
    public int Steps { get; init; } = 20;
    public double Cfg { get; init; } = 7;
    public string Sampler { get; init; } = "euler_ancestral";
    public string Scheduler { get; init; } = "normal";
    public int Width { get; init; } = 512;
    public int Height { get; init; } = 512;
    public int ClipSkip { get; init; } = 1;
    /// <summary>Fraction of the schedule to run; &lt; 1 only with an init image.</summary>
    public double Denoise { get; init; } = 1;
    /// <summary>Init image [1,3,H,W] in [0,1] (img2img and inpainting).</summary>
    public Tensor? InitImage { get; init; }
    /// <summary>Mask [1,1,H,W] in [0,1], 1 = repaint.</summary>
    public Tensor? Mask { get; init; }
    /// <summary>Whether the VAE works in tiles (auto: only for large images).</summary>
    public Models.Vae.VaeTilingMode VaeTiling { get; init; } = Models.Vae.VaeTilingMode.Auto;
    /// <summary>How LoRAs are applied (`lora_mode`): merged, beside the layers (bypass), or auto (bypass only for per-step schedules).</summary>
    public Lora.LoraMode LoraMode { get; init; } = Lora.LoraMode.Auto;

    public void Validate()
    {
        if (Width <= 0 || Height <= 0 || Width % 8 != 0 || Height % 8 != 0)
            throw new UserErrorException($"width and height must be positive multiples of 8, got {Width}x{Height}");
        if (Steps < 1) throw new UserErrorException($"steps must be 1 or more, got {Steps}");
        if (Cfg < 0 || double.IsNaN(Cfg)) throw new UserErrorException($"cfg must be 0 or more, got {Cfg}");
        if (Denoise is <= 0 or > 1) throw new UserErrorException($"denoise must be in (0, 1], got {Denoise}");
        if (Mask is not null && InitImage is null) throw new UserErrorException("a mask needs an init image");
        if (InitImage is not null && (InitImage.shape[2] != Height || InitImage.shape[3] != Width))
            throw new UserErrorException($"init image is {InitImage.shape[3]}x{InitImage.shape[2]}, expected {Width}x{Height}");
        if (Mask is not null && (Mask.shape[2] != Height || Mask.shape[3] != Width))
            throw new UserErrorException($"mask is {Mask.shape[3]}x{Mask.shape[2]}, expected {Width}x{Height}");
        if (!Sampling.Samplers.Names.Contains(Sampler))
            throw new UserErrorException($"unknown sampler '{Sampler}' (known: {string.Join(", ", Sampling.Samplers.Names)})");
        if (!Sampling.Schedulers.Names.Contains(Scheduler))
            throw new UserErrorException($"unknown scheduler '{Scheduler}' (known: {string.Join(", ", Sampling.Schedulers.Names)})");
    }
}

/// <summary>Seconds spent in each phase of a generation.</summary>
public sealed record GenerationTimings(double TextSeconds, double SamplingSeconds, double DecodeSeconds);

/// <summary>The final latent (model space, before decoding) and the decoded image in [0,1].</summary>
public sealed record GenerationResult(Tensor Latent, Tensor Image, float[] Sigmas, GenerationTimings Timings) : IDisposable
{
    public void Dispose()
    {
        Latent.Dispose();
        Image.Dispose();
    }
}
