using System.Globalization;
using LoraCraft.Generation;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Vae;
using LoraCraft.Pipelines;
using LoraCraft.Sampling;

namespace LoraCraft.Cli.Commands;

/// <summary>`generate`'s options as fields of a <see cref="GenerationJob"/> (options override a PNG's settings).</summary>
static class GenerateArgs
{
    public static GenerationJob Apply(Args a, GenerationJob j)
    {
        if (a.Get("prompt") is { } prompt) j = j with { Prompt = prompt };
        if (a.Get("negative") is { } negative) j = j with { Negative = negative };
        // -1 (or no --seed) draws one; the seed used is printed and recorded
        if (a.Get("seed") is { } seed) j = j with { Seed = Seeds.Parse(seed) };
        if (a.Get("steps") is not null) j = j with { Steps = a.GetInt("steps", j.Steps) };
        if (a.Get("cfg") is not null) j = j with { Cfg = a.GetDouble("cfg", j.Cfg) };
        // "Euler a", "DPM++ 2M Karras", "dpmpp_2m" ...; --scheduler overrides the name's schedule
        if (a.Get("sampler") is { } sampler) j = j with { Sampler = sampler, Scheduler = a.Get("scheduler") };
        else if (a.Get("scheduler") is { } scheduler)
        {
            // a schedule alone keeps the sampler (from a PNG: already one of ours)
            var (s, _) = SamplerNames.Resolve(j.Sampler, j.Scheduler);
            j = j with { Sampler = s, Scheduler = scheduler };
        }
        if (a.Get("width") is not null) j = j with { Width = a.GetInt("width", 0) };
        if (a.Get("height") is not null) j = j with { Height = a.GetInt("height", 0) };
        if (a.Get("clip-skip") is not null) j = j with { ClipSkip = a.GetInt("clip-skip", j.ClipSkip) };
        if (a.Get("denoise") is not null) j = j with { Denoise = a.GetDouble("denoise", 1) };
        if (a.Get("batch-count") is not null) j = j with { BatchCount = a.GetInt("batch-count", 1) };
        if (a.Get("init-image") is { } init) j = j with { InitImage = ImageInput.FromFile(init) };
        if (a.Get("mask") is { } mask) j = j with { Mask = ImageInput.FromFile(mask) };
        if (a.Flag("inpaint-crop"))
            j = j with
            {
                Inpaint = j.Inpaint with
                {
                    OnlyMasked = true,
                    Padding = a.Get("crop-context") is null ? null : a.GetInt("crop-context", 0),
                    WorkingSize = a.Get("crop-size") is null ? null : a.GetInt("crop-size", 0),
                },
            };
        j = j with { Loras = [.. j.Loras, .. a.GetAll("lora").Select(LoraTags.ParseOption).Select(t => new LoraUse(t.Name, t.UNet, t.TextEncoder, t.DynRank)
        {
            UNetSchedule = t.UNetSchedule?.ToString(), TextEncoderSchedule = t.TextEncoderSchedule?.ToString(),
        })] };
        if (a.Get("lora-mode") is { } loraMode) j = j with { LoraMode = LoraModes.Parse(loraMode) };
        if (a.Get("prediction") is { } prediction)
            j = j with
            {
                Prediction = prediction switch
                {
                    "v" or "v_prediction" => Models.Prediction.V,
                    "eps" or "epsilon" => Models.Prediction.Epsilon,
                    var p => throw new UserErrorException($"--prediction must be eps or v, got '{p}'"),
                },
            };
        if (a.Get("prompt-style") is not null) j = j with { PromptStyle = DebugCommand.ParseStyle(a.Get("prompt-style")) };
        if (a.Flag("old-scheduling")) j = j with { OldScheduling = true };
        if (a.Get("noise") is not null) j = j with { Noise = DebugCommand.ParseNoise(a.Get("noise")) };
        if (a.Get("subseed-strength") is not null) j = j with { SubseedStrength = a.GetDouble("subseed-strength", 0) };
        if (a.Get("subseed") is { } sub) j = j with { Subseed = Seeds.Parse(sub) };
        if (a.Get("noise-convention") is { } convention)
            j = j with
            {
                NoiseConvention = convention switch
                {
                    "a1111" => Sampling.NoiseConvention.A1111,
                    "comfy" or "comfyui" => Sampling.NoiseConvention.ComfyUI,
                    var c => throw new UserErrorException($"--noise-convention must be comfy or a1111, got '{c}'"),
                },
            };
        if (a.Get("vae-tiling") is { } tiling) j = j with { VaeTiling = VaeTiling.Parse(tiling) };
        if (a.Get("memory-limit") is { } limit) j = j with { MemoryLimitBytes = ParseSize(limit) };
        return j;
    }

    /// <summary>8G, 512M, 2.5GB, or bytes.</summary>
    static long ParseSize(string text)
    {
        string t = text.Trim().ToUpperInvariant().TrimEnd('B');
        double unit = t.EndsWith('K') ? 1e3 : t.EndsWith('M') ? 1e6 : t.EndsWith('G') ? 1e9 : t.EndsWith('T') ? 1e12 : 1;
        if (unit > 1) t = t[..^1];
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || v <= 0)
            throw new UserErrorException($"--memory-limit must be a size such as 8G or 512M, got '{text}'");
        return (long)(v * unit);
    }
}
