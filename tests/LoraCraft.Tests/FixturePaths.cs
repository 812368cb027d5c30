namespace LoraCraft.Tests;

/// <summary>
/// Where the reference fixtures live: $LORACRAFT_FIXTURES, else the <c>shared/fixtures</c> folder
/// beside the repository root (the folder holding LoraCraft.slnx). Null when absent.
/// </summary>
public static class FixturePaths
{
    public static string? Root { get; } = Find();

    static string? Find()
    {
        if (Environment.GetEnvironmentVariable("LORACRAFT_FIXTURES") is { Length: > 0 } configured)
            return Directory.Exists(configured) ? Path.GetFullPath(configured) : null;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (!File.Exists(Path.Combine(dir.FullName, "LoraCraft.slnx"))) continue;
            var fixtures = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "fixtures"));
            return Directory.Exists(fixtures) ? fixtures : null;
        }
        return null;
    }
}
