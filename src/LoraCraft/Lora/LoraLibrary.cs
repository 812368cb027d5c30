using LoraCraft.IO;

namespace LoraCraft.Lora;

/// <summary>
/// The user's LoRA folder (A1111's `models/Lora`), searched recursively for `.safetensors`.
/// Names are file stems: exact match first, then case-insensitive; unknown names get the
/// closest known ones in the error. Names with path separators or `..` are refused.
/// </summary>
public sealed class LoraLibrary
{
    public string Root { get; }
    readonly object _lock = new();
    IReadOnlyList<string>? _files;
    readonly Dictionary<string, (long Size, DateTime Modified, LoraListing Listing)> _listings = new(StringComparer.Ordinal);

    public LoraLibrary(string root) => Root = root;

    /// <summary>The `.safetensors` files under the folder, scanned on first use and after <see cref="Refresh"/>.</summary>
    public IReadOnlyList<string> Files
    {
        get
        {
            lock (_lock)
                return _files ??= Directory.Exists(Root)
                    ? Directory.EnumerateFiles(Root, "*.safetensors", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true })
                        .Order(StringComparer.Ordinal).ToList()
                    : [];
        }
    }

    /// <summary>Scans the folder again (A1111's refresh-loras); parsed headers of unchanged files are kept.</summary>
    public void Refresh()
    {
        lock (_lock) _files = null;
    }

    /// <summary>Drops one file's cached summary (its sidecars changed: trigger words come from NAME.json).</summary>
    public void Forget(string path)
    {
        lock (_listings) _listings.Remove(path);
    }

    /// <summary>
    /// Every file's summary (header and sidecars only), each parsed once and reused until its size
    /// or modification time changes; unreadable files carry their error.
    /// </summary>
    public IReadOnlyList<LoraListing> Listings(FileHashes? hashes = null)
    {
        var files = Files;
        using var batch = hashes?.Batch();
        var result = files.AsParallel().AsOrdered().Select(path =>
        {
            var info = new FileInfo(path);
            lock (_listings)
                if (_listings.TryGetValue(path, out var c) && info.Exists && c.Size == info.Length && c.Modified == info.LastWriteTimeUtc
                    && (hashes is null || c.Listing.Info?.Hash is not null || c.Listing.Info is null))
                    return c.Listing;
            LoraListing listing;
            try { listing = new LoraListing(path, LoraInfo.Read(path, hashes), null); }
            catch (Exception e) when (e is UserErrorException or IOException or UnauthorizedAccessException)
            {
                listing = new LoraListing(path, null, e.Message);
            }
            lock (_listings) _listings[path] = (info.Exists ? info.Length : -1, info.Exists ? info.LastWriteTimeUtc : default, listing);
            return listing;
        }).ToList();
        return result;
    }

    /// <summary>The library name of a file under the folder: its stem.</summary>
    public static string NameOf(string path) => Path.GetFileNameWithoutExtension(path);

    public string Resolve(string name)
    {
        if (name.Contains('/') || name.Contains('\\') || name.Contains("..", StringComparison.Ordinal))
            throw new UserErrorException($"LoRA name '{name}' may not contain path separators or '..'");
        var exact = Files.Where(f => Path.GetFileNameWithoutExtension(f) == name).ToList();
        if (exact.Count > 0) return exact[0];
        var folded = Files.Where(f => string.Equals(Path.GetFileNameWithoutExtension(f), name, StringComparison.OrdinalIgnoreCase)).ToList();
        if (folded.Count > 0) return folded[0];
        if (!Directory.Exists(Root)) throw new UserErrorException(ErrorKind.NotFound, $"LoRA '{name}' not found: the LoRA folder {Root} does not exist");
        var pickle = new[] { ".pt", ".ckpt", ".bin" }
            .SelectMany(ext => Directory.EnumerateFiles(Root, name + ext, new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, MatchCasing = MatchCasing.CaseInsensitive }))
            .FirstOrDefault();
        if (pickle is not null)
            throw new UserErrorException(ErrorKind.Unsupported, $"LoRA '{name}' is a pickle file ({pickle}), which can run code and is not loaded; convert it to .safetensors");
        var closest = Files.Select(Path.GetFileNameWithoutExtension).OfType<string>()
            .OrderBy(n => Levenshtein(n.ToLowerInvariant(), name.ToLowerInvariant())).Take(3).ToList();
        throw new UserErrorException(ErrorKind.NotFound, $"LoRA '{name}' not found in {Root}" + (closest.Count > 0 ? $" (closest: {string.Join(", ", closest)})" : " (the folder has no .safetensors files)"));
    }

    /// <summary>A file given by path is used as is; anything else is a name in the library.</summary>
    public string ResolveFileOrName(string value) =>
        File.Exists(value) ? value : Resolve(value);

    /// <summary>The file whose A1111 LoRA hash (12 hex digits) is <paramref name="hash"/>, if any.</summary>
    public string? FindByHash(string hash, FileHashes hashes) =>
        Files.FirstOrDefault(f => string.Equals(hashes.LoraHash(f), hash, StringComparison.OrdinalIgnoreCase));

    static int Levenshtein(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
