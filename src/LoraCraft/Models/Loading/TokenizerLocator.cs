using LoraCraft.Text;

namespace LoraCraft.Models.Loading;

/// <summary>
/// Finds the CLIP tokenizer for a single-file checkpoint: the user's folder, else the config
/// folder's `tokenizer/` (or `tokenizer_2/`), else the Hugging Face cache of
/// openai/clip-vit-large-patch14 (every SD1/SD2/SDXL text encoder uses that vocabulary).
/// </summary>
public static class TokenizerLocator
{
    public const string HubRepo = "openai/clip-vit-large-patch14";

    public static ClipTokenizer Find(string? userDir, string? configDir, string sub, string modelPath) =>
        Find(userDir, configDir, sub, modelPath, HubCacheRoot);

    /// <summary>As <see cref="Find(string?, string?, string, string)"/>, looking in the given hub cache instead of the environment's.</summary>
    public static ClipTokenizer Find(string? userDir, string? configDir, string sub, string modelPath, string hubCacheRoot)
    {
        if (userDir is not null) return ClipTokenizer.FromDirectory(userDir);
        if (configDir is not null)
        {
            var d = Path.Combine(configDir, sub);
            if (Directory.Exists(d)) return ClipTokenizer.FromDirectory(d);
            d = Path.Combine(configDir, "tokenizer");
            if (Directory.Exists(d)) return ClipTokenizer.FromDirectory(d);
        }
        if (HubCacheDir(hubCacheRoot) is { } cached) return ClipTokenizer.FromDirectory(cached);
        throw new UserErrorException(
            $"{modelPath}: no CLIP tokenizer found: give a tokenizer folder (vocab.json + merges.txt), or run " +
            $"'loracraft tokenizer download' once to fetch it into the Hugging Face cache") { Field = "tokenizer" };
    }

    /// <summary>HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.</summary>
    public static string HubCacheRoot =>
        Environment.GetEnvironmentVariable("HF_HUB_CACHE") is { Length: > 0 } c ? c
        : Environment.GetEnvironmentVariable("HF_HOME") is { Length: > 0 } h ? Path.Combine(h, "hub")
        : Path.Combine(Runtime.Paths.UserCache, "huggingface", "hub");

    /// <summary>The CLIP repository's folder in a hub cache, as huggingface_hub names it.</summary>
    public static string HubRepoDir(string hubCacheRoot) => Path.Combine(hubCacheRoot, "models--" + HubRepo.Replace("/", "--"));

    public static string? HubCacheDir() => HubCacheDir(HubCacheRoot);

    /// <summary>A snapshot of the CLIP repository in the hub cache holding vocab.json and merges.txt.</summary>
    public static string? HubCacheDir(string hubCacheRoot)
    {
        var snapshots = Path.Combine(HubRepoDir(hubCacheRoot), "snapshots");
        if (!Directory.Exists(snapshots)) return null;
        return Directory.EnumerateDirectories(snapshots)
            .Where(d => File.Exists(Path.Combine(d, "vocab.json")) && File.Exists(Path.Combine(d, "merges.txt")))
            .OrderByDescending(d => Directory.GetLastWriteTimeUtc(d))
            .FirstOrDefault();
    }
}
