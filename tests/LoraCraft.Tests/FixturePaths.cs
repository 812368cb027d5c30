namespace LoraCraft.Tests;

/// <summary>Where the shared reference data lives; null when it is absent (tests then skip, saying so).</summary>
public static class FixturePaths
{
    /// <summary>The fixtures folder: $LORACRAFT_FIXTURES, else ../shared/fixtures next to the checkout.</summary>
    public static string? Root { get; } = Existing(Environment.GetEnvironmentVariable("LORACRAFT_FIXTURES"))
        ?? Existing(SharedDir() is { } s ? Path.Combine(s, "fixtures") : null);

    /// <summary>The real CLIP vocabulary: clip-tokenizer beside the fixtures folder, else ../shared/clip-tokenizer.</summary>
    public static string? ClipTokenizer { get; } = Existing(Root is { } r ? Path.Combine(r, "..", "clip-tokenizer") : null)
        ?? Existing(SharedDir() is { } s ? Path.Combine(s, "clip-tokenizer") : null);

    static string? SharedDir()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LoraCraft.slnx")))
                return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared"));
        return null;
    }

    static string? Existing(string? dir) => !string.IsNullOrEmpty(dir) && Directory.Exists(dir) ? Path.GetFullPath(dir) : null;
}
