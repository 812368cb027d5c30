using LoraCraft.IO;

namespace LoraCraft.Lora.Hub;

/// <summary>
/// What may enter the LoRA folder: only safetensors files. Pickles (`.ckpt`, `.pt`, `.bin`, ...)
/// can run code when loaded and are refused by name before downloading, and by their first bytes
/// after; anything else must pass the safetensors header validation.
/// </summary>
internal static class DownloadedFileCheck
{
    static readonly string[] PickleExtensions = [".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"];

    /// <summary>Throws for a file name that is not a .safetensors one (checked before anything is downloaded).</summary>
    public static void RefuseByName(string fileName, string where)
    {
        string ext = Path.GetExtension(fileName).ToLowerInvariant();
        if (PickleExtensions.Contains(ext))
            throw new HubException($"{where}: '{fileName}' is a pickle file ({ext}), which can run code when loaded; LoraCraft installs only .safetensors LoRAs");
        if (ext.Length > 0 && ext != ".safetensors")
            throw new HubException($"{where}: '{fileName}' is not a .safetensors file");
    }

    /// <summary>Throws when the downloaded file is not a valid safetensors file; says what it looks like instead.</summary>
    public static SafetensorsHeader Validate(string path, string where)
    {
        var head = new byte[8];
        int n;
        using (var f = File.OpenRead(path)) n = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        string? looks = n < 2 ? null
            : head[0] == 'P' && head[1] == 'K' ? "a zip archive (a PyTorch pickle checkpoint?), which can run code when loaded"
            : head[0] == 0x80 && head[1] is >= 2 and <= 5 ? "a Python pickle, which can run code when loaded"
            : head[0] == '<' ? "an HTML page (a login page? the download may need a token)"
            : head[0] == '{' ? "JSON (an error message from the site?)"
            : null;
        if (looks is not null) throw new HubException($"{where}: the downloaded file is {looks}, not a safetensors file; it was not kept");
        try { return SafetensorsHeader.Read(path); }
        catch (SafetensorsFormatException e)
        {
            string problem = e.Tensor is null ? e.Problem : $"tensor '{e.Tensor}': {e.Problem}";
            throw new HubException($"{where}: the downloaded file is not a valid safetensors file ({problem}); it was not kept");
        }
    }
}
