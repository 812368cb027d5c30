using static TorchSharp.torch;

namespace LoraCraft.Pipelines;

/// <summary>Everything that decides an image, as A1111/ComfyUI users know the settings.</summary>
public sealed record GenerationRequest
{
    public string Prompt { get; init; } = "";
    public string Negative { get; init; } = "";
    public ulong Seed { get; init; }
    public int Steps { get; init; } = 20;
    public double Cfg { get; init; } = 7;
    public string Sampler { get; init; } = "euler_ancestral";
    public string Scheduler { get; init; } = "normal";
    public int Width { get; init; } = 512;
    public int Height { get; init; } = 512;
    public int ClipSkip { get; init; } = 1;
    /// <summary>Fraction of the schedule to run; &lt; 1 only with an init image.</summary>
    public double Denoise { get; init; } = 1;
    /// <summary>
    /// A1111's img2img rule instead of ComfyUI's: a schedule of this many steps, of which the last
    /// <see cref="Steps"/> run (ComfyUI: a schedule of steps / denoise steps). Null: ComfyUI's.
    /// </summary>
    public int? ScheduleSteps { get; init; }
    /// <summary>Init image [1,3,H,W] in [0,1] (img2img and inpainting).</summary>
    public Tensor? InitImage { get; init; }
    /// <summary>Mask [1,1,H,W] in [0,1], 1 = repaint.</summary>
    public Tensor? Mask { get; init; }
    /// <summary>What the masked latent starts from (A1111's "masked content": original, latent noise, latent nothing).</summary>
    public MaskedLatentFill MaskedLatent { get; init; } = MaskedLatentFill.Original;
    /// <summary>Whether the VAE works in tiles (auto: only for large images).</summary>
    public Models.Vae.VaeTilingMode VaeTiling { get; init; } = Models.Vae.VaeTilingMode.Auto;
    /// <summary>Whose prompt language: A1111's (emphasis, BREAK, editing, AND) or ComfyUI's CLIPTextEncode weighting.</summary>
    public Text.PromptStyle PromptStyle { get; init; } = Text.PromptStyle.A1111;
    /// <summary>A1111's "use old prompt editing timelines".</summary>
    public bool OldScheduling { get; init; }
    /// <summary>Textual-inversion embeddings the prompts may name (library plus those bundled in the applied LoRAs).</summary>
    public Text.Embeddings.EmbeddingSet? Embeddings { get; init; }
    /// <summary>Noise generator: torch's CPU one, or A1111's "NV" (Philox, what CUDA's randn gives).</summary>
    public Sampling.RandomSource Noise { get; init; } = Sampling.RandomSource.Cpu;
    /// <summary>How the seed drives the noise: ComfyUI's (ancestral noise from seed + 1) or A1111's (one generator per image).</summary>
    public Sampling.NoiseConvention NoiseConvention { get; init; } = Sampling.NoiseConvention.ComfyUI;
    /// <summary>A1111's variation seed and strength (0: none).</summary>
    public ulong Subseed { get; init; }
    public double SubseedStrength { get; init; }
    /// <summary>How LoRAs are applied (`lora_mode`): merged, beside the layers (bypass), or auto (bypass only for per-step schedules).</summary>
    public Lora.LoraMode LoraMode { get; init; } = Lora.LoraMode.Auto;

    public void Validate()
    {
        if (Width <= 0 || Height <= 0 || Width % 8 != 0 || Height % 8 != 0)
            throw new UserErrorException($"width and height must be positive multiples of 8, got {Width}x{Height}");
        if (Width > MemoryEstimate.MaxSide || Height > MemoryEstimate.MaxSide)
            throw new UserErrorException($"width and height must be at most {MemoryEstimate.MaxSide}, got {Width}x{Height}");
        if (Steps < 1) throw new UserErrorException($"steps must be 1 or more, got {Steps}");
        if (Cfg < 0 || double.IsNaN(Cfg)) throw new UserErrorException($"cfg must be 0 or more, got {Cfg}");
        if (Denoise is <= 0 or > 1) throw new UserErrorException($"denoise must be in (0, 1], got {Denoise}");
        if (Mask is not null && InitImage is null) throw new UserErrorException("a mask needs an init image");
        if (InitImage is not null && (InitImage.shape[2] != Height || InitImage.shape[3] != Width))
            throw new UserErrorException($"init image is {InitImage.shape[3]}x{InitImage.shape[2]}, expected {Width}x{Height}");
        if (Mask is not null && (Mask.shape[2] != Height || Mask.shape[3] != Width))
            throw new UserErrorException($"mask is {Mask.shape[3]}x{Mask.shape[2]}, expected {Width}x{Height}");
        Sampling.SamplerRegistry.RequireSampler(Sampler);
        if (SubseedStrength is < 0 or > 1 || double.IsNaN(SubseedStrength))
            throw new UserErrorException($"subseed strength must be in [0, 1], got {SubseedStrength}");
        Sampling.SamplerRegistry.RequireScheduler(Scheduler);
    }
}

/// <summary>Seconds spent in each phase of a generation.</summary>
public sealed record GenerationTimings(double TextSeconds, double SamplingSeconds, double DecodeSeconds);

/// <summary>The final latent (model space, before decoding) and the decoded image in [0,1].</summary>
public sealed record GenerationResult(Tensor Latent, Tensor Image, float[] Sigmas, GenerationTimings Timings) : IDisposable
{
    /// <summary>The prompt texts in use from each step on where they changed (prompt editing).</summary>
    public IReadOnlyList<StepPrompts> Prompts { get; init; } = [];
    /// <summary>Sampling was stopped early (skip / interrupt): the latent is the last denoised estimate.</summary>
    public bool Partial { get; init; }

    public void Dispose()
    {
        Latent.Dispose();
        Image.Dispose();
    }
}
