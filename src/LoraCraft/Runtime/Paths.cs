namespace LoraCraft.Runtime;

/// <summary>Well-known folders: our cache (XDG_CACHE_HOME or ~/.cache) and Hugging Face's.</summary>
public static class Paths
{
    public static string UserCache =>
        Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x
            ? x
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");

    /// <summary>LORACRAFT_CACHE, else ~/.cache/loracraft.</summary>
    public static string CacheRoot =>
        Environment.GetEnvironmentVariable("LORACRAFT_CACHE") is { Length: > 0 } c ? c : Path.Combine(UserCache, "loracraft");
}
