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
    readonly Lazy<IReadOnlyList<string>> _files;

    public LoraLibrary(string root)
    {
        Root = root;
        _files = new(() => Directory.Exists(root)
            ? Directory.EnumerateFiles(root, "*.safetensors", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true })
                .Order(StringComparer.Ordinal).ToList()
            : []);
    }

    public IReadOnlyList<string> Files => _files.Value;

    public string Resolve(string name)
    {
        if (name.Contains('/') || name.Contains('\\') || name.Contains("..", StringComparison.Ordinal))
            throw new UserErrorException($"LoRA name '{name}' may not contain path separators or '..'");
        var exact = Files.Where(f => Path.GetFileNameWithoutExtension(f) == name).ToList();
        if (exact.Count > 0) return exact[0];
        var folded = Files.Where(f => string.Equals(Path.GetFileNameWithoutExtension(f), name, StringComparison.OrdinalIgnoreCase)).ToList();
        if (folded.Count > 0) return folded[0];
        if (!Directory.Exists(Root)) throw new UserErrorException($"LoRA '{name}' not found: the LoRA folder {Root} does not exist (use --lora-dir)");
        var pickle = new[] { ".pt", ".ckpt", ".bin" }
            .SelectMany(ext => Directory.EnumerateFiles(Root, name + ext, new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, MatchCasing = MatchCasing.CaseInsensitive }))
            .FirstOrDefault();
        if (pickle is not null)
            throw new UserErrorException($"LoRA '{name}' is a pickle file ({pickle}), which can run code and is not loaded; convert it to .safetensors");
        var closest = Files.Select(Path.GetFileNameWithoutExtension).OfType<string>()
            .OrderBy(n => Levenshtein(n.ToLowerInvariant(), name.ToLowerInvariant())).Take(3).ToList();
        throw new UserErrorException($"LoRA '{name}' not found in {Root}" + (closest.Count > 0 ? $" (closest: {string.Join(", ", closest)})" : " (the folder has no .safetensors files)"));
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
