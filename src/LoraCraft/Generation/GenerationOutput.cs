using LoraCraft.Pipelines;

namespace LoraCraft.Generation;

/// <summary>A final latent as plain numbers (model space, [1, C, h, w]).</summary>
public sealed record LatentData(float[] Values, long[] Shape);

/// <summary>One finished image: PNG bytes carrying A1111's `parameters` text, and what made it.</summary>
public sealed record GeneratedImage(byte[] Png, int Width, int Height, ulong Seed, ulong Subseed, string Infotext)
{
    public LatentData? Latent { get; init; }
    /// <summary>Sampling stopped early (skip or interrupt): the image is the last step's denoised estimate.</summary>
    public bool Partial { get; init; }
    /// <summary>Crop-and-stitch: the box that was generated, and at what size.</summary>
    public CropBox? Crop { get; init; }
}

/// <summary>What a job produced, plus everything the APIs echo back (A1111's `info`).</summary>
public sealed record GenerationOutput(IReadOnlyList<GeneratedImage> Images, ResolvedJob Job)
{
    public IReadOnlyList<string> Notes { get; init; } = [];
    public IReadOnlyList<string> Warnings { get; init; } = [];
    public bool Interrupted { get; init; }
    public double Seconds { get; init; }
}

/// <summary>The settings actually used once the defaults of the model and the inputs were applied.</summary>
public sealed record ResolvedJob(
    string ModelName, string? ModelHash, string Family, string Prompt, string Negative, ulong Seed, ulong Subseed,
    int Steps, double Cfg, string Sampler, string Scheduler, int Width, int Height, int ClipSkip, double Denoise, bool Img2Img,
    IReadOnlyList<AppliedLora> Loras);

/// <summary>A LoRA as it was applied: name, file, strengths, how many layers it patched.</summary>
public sealed record AppliedLora(string Name, string Path, double UNet, double TextEncoder, int Layers, int UnmatchedKeys)
{
    /// <summary>The adapter type (lora, locon, loha, lokr, ia3, full, oft, …).</summary>
    public string Algorithm { get; init; } = "lora";
}
