using LoraCraft.Models;

namespace LoraCraft.Lora.Hub;

/// <summary>
/// The sites' names for base models, against LoraCraft's families: Civitai's `baseModel` values
/// ("SD 1.5", "SDXL 1.0", "Pony", "Illustrious", ...) and Hugging Face's `base_model` repos.
/// </summary>
public static class BaseModels
{
    // Civitai's BaseModel enum values whose LoRAs load on each family (Pony, Illustrious, NoobAI are SDXL fine-tunes)
    static readonly string[] CivitaiSd1 = ["SD 1.4", "SD 1.5", "SD 1.5 LCM", "SD 1.5 Hyper"];
    static readonly string[] CivitaiSd2 = ["SD 2.0", "SD 2.0 768", "SD 2.1", "SD 2.1 768", "SD 2.1 Unclip"];
    static readonly string[] CivitaiSdxl = ["SDXL 0.9", "SDXL 1.0", "SDXL 1.0 LCM", "SDXL Distilled", "SDXL Turbo", "SDXL Lightning", "SDXL Hyper", "Pony", "Illustrious", "NoobAI"];

    /// <summary>What to send as Civitai's `baseModels` filter for a family.</summary>
    public static IReadOnlyList<string> CivitaiFilter(ModelFamily family) => family switch
    {
        ModelFamily.Sd1 => CivitaiSd1,
        ModelFamily.Sd2 => CivitaiSd2,
        _ => CivitaiSdxl,
    };

    /// <summary>The family of a Civitai `baseModel`; null for other architectures (Flux, SD3, video ...).</summary>
    public static ModelFamily? FromCivitai(string? baseModel)
    {
        if (string.IsNullOrWhiteSpace(baseModel)) return null;
        if (CivitaiSd1.Contains(baseModel) || baseModel.StartsWith("SD 1.", StringComparison.Ordinal)) return ModelFamily.Sd1;
        if (CivitaiSd2.Contains(baseModel) || baseModel.StartsWith("SD 2.", StringComparison.Ordinal)) return ModelFamily.Sd2;
        if (CivitaiSdxl.Contains(baseModel) || baseModel.StartsWith("SDXL", StringComparison.Ordinal)) return ModelFamily.Sdxl;
        return null;
    }

    /// <summary>The family of a Hugging Face base model repo ("stabilityai/stable-diffusion-xl-base-1.0", "stable-diffusion-v1-5/stable-diffusion-v1-5").</summary>
    public static ModelFamily? FromHuggingFace(string? repo)
    {
        if (string.IsNullOrWhiteSpace(repo)) return null;
        var r = repo.ToLowerInvariant();
        if (r.Contains("xl") || r.Contains("pony") || r.Contains("illustrious") || r.Contains("noobai")) return ModelFamily.Sdxl;
        if (r.Contains("stable-diffusion-2") || r.Contains("sd2") || r.Contains("sd-2")) return ModelFamily.Sd2;
        if (r.Contains("stable-diffusion-v1") || r.Contains("stable-diffusion-v-1") || r.Contains("sd-1") || r.Contains("v1-5") || r.Contains("sd15") || r.Contains("sd1.5"))
            return ModelFamily.Sd1;
        return null;
    }

    /// <summary>The base model repo named by a Hugging Face tag list (`base_model:adapter:REPO` or `base_model:REPO`).</summary>
    public static string? HuggingFaceBaseFromTags(IEnumerable<string> tags)
    {
        string? plain = null;
        foreach (var tag in tags)
        {
            if (tag.StartsWith("base_model:adapter:", StringComparison.Ordinal)) return tag["base_model:adapter:".Length..];
            if (tag.StartsWith("base_model:", StringComparison.Ordinal) && tag.IndexOf(':', "base_model:".Length) < 0) plain ??= tag["base_model:".Length..];
        }
        return plain;
    }

    /// <summary>A1111's `sd version` (SD1, SD2, SDXL) for a family.</summary>
    public static string A1111SdVersion(ModelFamily family) => family switch
    {
        ModelFamily.Sd1 => "SD1",
        ModelFamily.Sd2 => "SD2",
        _ => "SDXL",
    };
}
