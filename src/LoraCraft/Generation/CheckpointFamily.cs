using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Models;
using LoraCraft.Models.Loading;

namespace LoraCraft.Generation;

/// <summary>
/// The family of a catalog entry without loading it: a single file's safetensors header (keys and
/// shapes, <see cref="CheckpointLayout.Detect"/>), a diffusers folder's layout. What a web UI needs
/// to hide the LoRAs made for another family. Null when it cannot tell (pickles, damaged files).
/// </summary>
public static class CheckpointFamily
{
    public static ModelFamily? Of(CheckpointEntry entry)
    {
        try
        {
            switch (entry.Kind)
            {
                case CheckpointKind.SingleFile:
                    return CheckpointLayout.Detect(SafetensorsHeader.Read(entry.Path)).Family;
                case CheckpointKind.Diffusers:
                    return OfDiffusersFolder(entry.Path);
                default:
                    return null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or SafetensorsFormatException)
        {
            return null;
        }
    }

    /// <summary>Two text encoders: SDXL; an OpenCLIP encoder (gelu) or linear projections: SD2; else SD1 (as the loader decides).</summary>
    static ModelFamily OfDiffusersFolder(string dir)
    {
        if (Directory.Exists(Path.Combine(dir, "text_encoder_2"))) return ModelFamily.Sdxl;
        var te = Path.Combine(dir, "text_encoder", "config.json");
        if (File.Exists(te) && ModelConfigs.ReadJson(te).TryGetProperty("hidden_act", out var act) && act.GetString() == "gelu") return ModelFamily.Sd2;
        var unet = Path.Combine(dir, "unet", "config.json");
        if (File.Exists(unet) && ModelConfigs.UNetFromDiffusers(unet).LinearProjection) return ModelFamily.Sd2;
        return ModelFamily.Sd1;
    }
}
