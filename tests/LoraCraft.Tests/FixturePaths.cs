namespace LoraCraft.Tests;

/// <summary>Where the shared reference data lives; null when it is absent (tests then skip, saying so).</summary>
public static class FixturePaths
{
    static readonly string? Configured = Environment.GetEnvironmentVariable("LORACRAFT_FIXTURES") is { Length: > 0 } c ? c : null;

    /// <summary>The fixtures folder: $LORACRAFT_FIXTURES when set (even if missing), else ../shared/fixtures next to the checkout.</summary>
    public static string? Root { get; } = Configured is not null
        ? Existing(Configured)
        : Existing(SharedDir() is { } s ? Path.Combine(s, "fixtures") : null);

    /// <summary>The real CLIP vocabulary: clip-tokenizer beside the fixtures folder.</summary>
    public static string? ClipTokenizer { get; } = Root is { } r ? Existing(Path.Combine(r, "..", "clip-tokenizer")) : null;

    /// <summary>The repository checkout the tests run from (the folder holding LoraCraft.slnx), or null.</summary>
    public static string? RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LoraCraft.slnx"))) return dir.FullName;
        return null;
    }

    static string? SharedDir()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LoraCraft.slnx")))
                return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared"));
        return null;
    }

    static string? Existing(string? dir) => !string.IsNullOrEmpty(dir) && Directory.Exists(dir) ? Path.GetFullPath(dir) : null;
}
