using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using LoraCraft.Pipelines;

namespace LoraCraft.Lora.Hub;

/// <summary>
/// Writes the files beside a LoRA that Civitai Helper and A1111 write (each by temp file and
/// rename): `NAME.civitai.info` (the model-version record), `NAME.preview.png`, and for Hugging
/// Face downloads A1111's `NAME.json` (activation text from the card), never over a user's own.
/// </summary>
internal static class SidecarWriter
{
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string WriteCivitaiInfo(string loraPath, CivitaiVersion version)
    {
        string path = LoraSidecars.Stem(loraPath) + LoraSidecars.CivitaiInfoSuffix;
        AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(version.Record, Indented));
        return path;
    }

    /// <summary>Saves <paramref name="image"/> as the card preview; null (and why in <paramref name="warnings"/>) when it is no still image.</summary>
    public static string? WritePreview(string loraPath, byte[] image, List<string> warnings)
    {
        var png = PreviewImage.ToPng(image);
        if (png is null)
        {
            warnings.Add("the preview is not an image LoraCraft can read (a video?); no preview saved");
            return null;
        }
        string path = LoraSidecars.Stem(loraPath) + LoraSidecars.PreviewSuffix;
        AtomicFile.WriteAllBytes(path, png);
        return path;
    }

    /// <summary>A1111's user metadata from a Hugging Face card, when the user has none yet and the card says something.</summary>
    public static string? WriteUserMetadata(string loraPath, HuggingFaceRepo repo, Uri page)
    {
        string path = LoraSidecars.Stem(loraPath) + LoraSidecars.UserMetadataSuffix;
        if (File.Exists(path)) return null;
        var family = BaseModels.FromHuggingFace(repo.BaseModel);
        if (repo.InstancePrompt is null && family is null) return null;
        var metadata = new JsonObject
        {
            ["description"] = "",
            ["sd version"] = family is { } f ? BaseModels.A1111SdVersion(f) : "Unknown",
            ["activation text"] = repo.InstancePrompt ?? "",
            ["preferred weight"] = 0,
            ["negative text"] = "",
            ["notes"] = page.ToString(),
        };
        AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(metadata, Indented));
        return path;
    }
}
