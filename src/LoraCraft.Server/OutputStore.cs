using System.Globalization;
using System.Text.RegularExpressions;
using LoraCraft.Pipelines;

namespace LoraCraft.Server;

/// <summary>A saved image: its path relative to the outputs folder, and when it was made.</summary>
public sealed record SavedOutput(string RelativePath, DateTime Created, long Bytes);

/// <summary>
/// The outputs folder as A1111 lays it out: `txt2img-images/YYYY-MM-DD/NNNNN-SEED.png` (img2img
/// alike), numbered on from the highest number already in that day's folder. Names from requests
/// never leave the folder.
/// </summary>
public sealed partial class OutputStore(string root)
{
    readonly object _lock = new();

    public string Root { get; } = Path.GetFullPath(root);

    [GeneratedRegex(@"^(\d{5})-")]
    private static partial Regex Numbered();

    public SavedOutput Save(string kind, byte[] png, ulong seed)
    {
        if (kind is not ("txt2img" or "img2img")) throw new ArgumentException(kind);
        var dir = Path.Combine(Root, kind + "-images", DateTime.Now.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture));
        lock (_lock)
        {
            Directory.CreateDirectory(dir);
            int next = Directory.EnumerateFiles(dir, "*.png").Select(f => Numbered().Match(Path.GetFileName(f)))
                .Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) + 1).DefaultIfEmpty(0).Max();
            var path = Path.Combine(dir, $"{next:D5}-{seed}.png");
            AtomicFile.WriteAllBytes(path, png);
            return new SavedOutput(Relative(path), DateTime.Now, png.Length);
        }
    }

    string Relative(string path) => Path.GetRelativePath(Root, path).Replace(Path.DirectorySeparatorChar, '/');

    /// <summary>The newest saved images first.</summary>
    public IReadOnlyList<SavedOutput> Recent(int limit = 200)
    {
        if (!Directory.Exists(Root)) return [];
        return new DirectoryInfo(Root).EnumerateFiles("*.png", SearchOption.AllDirectories)
            .OrderByDescending(f => f.LastWriteTimeUtc).Take(limit)
            .Select(f => new SavedOutput(Relative(f.FullName), f.LastWriteTime, f.Length)).ToList();
    }

    /// <summary>The file of a relative path from a request, only when it is inside the folder.</summary>
    public string? Find(string relative)
    {
        if (!SafePaths.IsSafeRelative(relative)) return null;
        var full = Path.GetFullPath(Path.Combine(Root, relative));
        return SafePaths.IsInside(Root, full) && File.Exists(full) ? full : null;
    }
}

/// <summary>Names and paths from requests, checked against their folder.</summary>
public static class SafePaths
{
    /// <summary>A relative path with no `..`, no root, no drive, no backslashes.</summary>
    public static bool IsSafeRelative(string? relative) =>
        !string.IsNullOrEmpty(relative) && !relative.Contains('\\') && !relative.StartsWith('/') && !Path.IsPathRooted(relative)
        && !relative.Split('/').Any(p => p is ".." or "." || p.Length == 0) && relative.IndexOf('\0') < 0;

    public static bool IsInside(string root, string fullPath)
    {
        var r = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root)) + Path.DirectorySeparatorChar;
        return Path.GetFullPath(fullPath).StartsWith(r, StringComparison.Ordinal);
    }
}
