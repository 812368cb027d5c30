using LoraCraft.Models;
using LoraCraft.Models.Vae;
using LoraCraft.Sampling;
using LoraCraft.Text;

namespace LoraCraft.Generation;

/// <summary>An image given to a job: its encoded bytes (PNG, JPEG, WebP …) or a file path.</summary>
public sealed record ImageInput(byte[]? Bytes = null, string? Path = null)
{
    public static ImageInput FromFile(string path) => new(Path: path);
    public static ImageInput FromBytes(byte[] bytes) => new(Bytes: bytes);
    public string Describe(string what) => Path ?? what;
}

/// <summary>A LoRA chosen outside the prompt (ComfyUI's LoraLoader, the native API's list): name or file, strengths.</summary>
public sealed record LoraUse(string Name, double UNet = 1, double TextEncoder = 1, int? DynRank = null)
{
    /// <summary>Per-step UNet strength as keyframes ("0@0,1@0.5", steps or fractions); overrides <see cref="UNet"/>.</summary>
    public string? UNetSchedule { get; init; }
    /// <summary>Text-encoder strength as keyframes (the text is encoded once: the value at step 0 is used).</summary>
    public string? TextEncoderSchedule { get; init; }
    /// <summary>Per-block weights (`lbw=` text or the structured form); null: 1 everywhere.</summary>
    public Lora.LoraBlockWeights? Blocks { get; init; }
}

/// <summary>A1111's "masked content" for inpainting (`inpainting_fill`).</summary>
public enum MaskedContent { Fill = 0, Original = 1, LatentNoise = 2, LatentNothing = 3 }

/// <summary>Inpainting settings beyond the mask itself.</summary>
public sealed record InpaintSettings
{
    /// <summary>Crop-and-stitch (A1111's "only masked"): generate the mask's neighbourhood at the working size.</summary>
    public bool OnlyMasked { get; init; }
    /// <summary>Pixels of context around the mask for crop-and-stitch (A1111's inpaint_full_res_padding).</summary>
    public int? Padding { get; init; }
    /// <summary>The working size of crop-and-stitch (default: the job's width/height, else the family's size).</summary>
    public int? WorkingSize { get; init; }
    /// <summary>Gaussian blur radius of the mask in pixels (A1111's mask_blur).</summary>
    public int MaskBlur { get; init; }
    /// <summary>Inpaint the black part instead (A1111's inpainting_mask_invert).</summary>
    public bool InvertMask { get; init; }
    public MaskedContent MaskedContent { get; init; } = MaskedContent.Original;
}

/// <summary>
/// One generation as plain data: what the CLI, the native API, the A1111 API and the ComfyUI
/// KSampler nodes all turn their inputs into. No tensors: images are bytes or paths, the model is
/// a name (or a path) the catalog resolves. Null means "the usual default for this model".
/// </summary>
public sealed record GenerationJob
{
    /// <summary>A checkpoint name (the catalog's name, A1111 title or hash) or a path.</summary>
    public required string Model { get; init; }
    /// <summary>Config folder for a single-file checkpoint given by path (catalog entries know their own).</summary>
    public string? ConfigDir { get; init; }
    public string? TokenizerDir { get; init; }
    public Prediction? Prediction { get; init; }

    public string Prompt { get; init; } = "";
    public string Negative { get; init; } = "";
    /// <summary>Null (or -1 in the APIs): a random seed, reported in the output.</summary>
    public ulong? Seed { get; init; }
    public int Steps { get; init; } = 20;
    public double Cfg { get; init; } = 7;
    /// <summary>Any name <see cref="SamplerNames"/> understands: ours, A1111's, legacy combined ("DPM++ 2M Karras").</summary>
    public string Sampler { get; init; } = "euler_ancestral";
    /// <summary>Null or "automatic": the sampler's default (A1111's rule for A1111 names, "normal" for ours).</summary>
    public string? Scheduler { get; init; }
    /// <summary>Null: the init image's size, else the family's default (SD1 512, SDXL 1024, SD2-v 768).</summary>
    public int? Width { get; init; }
    public int? Height { get; init; }
    public int ClipSkip { get; init; } = 1;
    /// <summary>Null: 0.75 for img2img, 1 otherwise (ComfyUI's denoise: the fraction of the schedule run).</summary>
    public double? Denoise { get; init; }
    /// <summary>A1111's img2img steps: a schedule of this many steps whose last <see cref="Steps"/> run (null: ComfyUI's denoise rule).</summary>
    public int? ScheduleSteps { get; init; }
    /// <summary>Images made one after another, image i with seed + i (A1111's batch_size × n_iter).</summary>
    public int BatchCount { get; init; } = 1;

    public ImageInput? InitImage { get; init; }
    public ImageInput? Mask { get; init; }
    public InpaintSettings Inpaint { get; init; } = new();

    public IReadOnlyList<LoraUse> Loras { get; init; } = [];
    /// <summary>How LoRAs are applied: merged, beside the layers (bypass), or auto (bypass only for per-step schedules).</summary>
    public Lora.LoraMode LoraMode { get; init; } = Lora.LoraMode.Auto;
    /// <summary>name -> A1111 LoRA hash, from a PNG's `Lora hashes`: finds renamed files.</summary>
    public IReadOnlyDictionary<string, string>? KnownLoraHashes { get; init; }

    public PromptStyle PromptStyle { get; init; } = PromptStyle.A1111;
    public bool OldScheduling { get; init; }
    public RandomSource Noise { get; init; } = RandomSource.Cpu;
    /// <summary>Null: A1111's with NV noise or a variation seed, else ComfyUI's.</summary>
    public NoiseConvention? NoiseConvention { get; init; }
    public ulong? Subseed { get; init; }
    public double SubseedStrength { get; init; }

    public VaeTilingMode VaeTiling { get; init; } = VaeTilingMode.Auto;
    /// <summary>Refuse (or tile) what would need more memory than this; null: what the machine has free.</summary>
    public long? MemoryLimitBytes { get; init; }
    /// <summary>Keep each image's final latent in the output (the CLI's --save-latent).</summary>
    public bool ReturnLatents { get; init; }
    /// <summary>Send a preview image with every n-th step event (0: none).</summary>
    public int PreviewEvery { get; init; }
}

/// <summary>Jobs from A1111's PNG parameters (PNG Info, `--from-png`, "send to generate").</summary>
public static class GenerationJobs
{
    /// <summary>
    /// <paramref name="job"/> with the settings of <paramref name="p"/> on top: prompt, sampler,
    /// steps, CFG, seed, size, denoise, clip skip, A1111's noise settings, and the LoRA hashes
    /// (so renamed LoRAs are found).
    /// </summary>
    public static GenerationJob WithParameters(this GenerationJob job, Pipelines.GenerationParameters p)
    {
        var r = p.ApplyTo(new Pipelines.GenerationRequest());
        job = job with
        {
            Prompt = r.Prompt, Negative = r.Negative, Steps = r.Steps, Cfg = r.Cfg, ClipSkip = r.ClipSkip,
            Sampler = p.Get("Sampler") is null ? job.Sampler : r.Sampler,
            Scheduler = p.Get("Sampler") is null ? job.Scheduler : r.Scheduler,
            Seed = p.Get("Seed") is null ? job.Seed : r.Seed,
            Width = p.Get("Size") is null ? job.Width : r.Width,
            Height = p.Get("Size") is null ? job.Height : r.Height,
            Denoise = p.Get("Denoising strength") is null ? job.Denoise : r.Denoise,
            Noise = r.Noise, OldScheduling = r.OldScheduling,
            NoiseConvention = p.Get("RNG") is null && p.Get("Variation seed strength") is null ? job.NoiseConvention : r.NoiseConvention,
            Subseed = p.Get("Variation seed") is null ? job.Subseed : r.Subseed,
            SubseedStrength = r.SubseedStrength,
        };
        var hashes = Lora.LoraSelector.ParseHashes(p.Get("Lora hashes"));
        return hashes.Count > 0 ? job with { KnownLoraHashes = hashes } : job;
    }
}
