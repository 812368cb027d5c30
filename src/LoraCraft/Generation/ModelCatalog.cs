using LoraCraft.IO;

namespace LoraCraft.Generation;

public enum CheckpointKind { SingleFile, Diffusers, Pickle }

/// <summary>One checkpoint of the folder: its name (relative path without extension, '/' separated) and files.</summary>
public sealed record CheckpointEntry(string Name, string Path, string? ConfigDir, CheckpointKind Kind)
{
    /// <summary>The relative file name A1111 shows ("sub/name.safetensors"; a diffusers folder's name).</summary>
    public string FileName => Kind == CheckpointKind.Diffusers ? Name : Name + System.IO.Path.GetExtension(Path);
    /// <summary>The stem ("name"), as A1111's model_name and ComfyUI users say it.</summary>
    public string Stem => Name.Contains('/') ? Name[(Name.LastIndexOf('/') + 1)..] : Name;
}

/// <summary>
/// The checkpoints folder (A1111's models/Stable-diffusion, ComfyUI's models/checkpoints), searched
/// recursively: `.safetensors` files, each with its `NAME.config/` folder when one is beside it
/// (what `--config` takes and `make-model --size tiny` writes); diffusers folders
/// (`model_index.json`); `.ckpt`/`.pt` files are listed but refused when chosen. Names from
/// requests never leave the folder.
/// </summary>
public sealed class ModelCatalog(string root, FileHashes hashes)
{
    readonly object _lock = new();
    IReadOnlyList<CheckpointEntry>? _entries;

    public string Root { get; } = root;
    public FileHashes Hashes { get; } = hashes;

    public IReadOnlyList<CheckpointEntry> Entries
    {
        get
        {
            lock (_lock) return _entries ??= Scan();
        }
    }

    /// <summary>Forgets the listing (A1111's refresh-checkpoints); the next use scans again.</summary>
    public void Refresh()
    {
        lock (_lock) _entries = null;
    }

    IReadOnlyList<CheckpointEntry> Scan()
    {
        var list = new List<CheckpointEntry>();
        if (!Directory.Exists(Root)) return list;
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true };
        // diffusers folders, but not a checkpoint's NAME.config folder (configs only, no weights)
        var diffusers = Directory.EnumerateFiles(Root, "model_index.json", options).Select(Path.GetDirectoryName).OfType<string>()
            .Where(d => !(d.EndsWith(".config", StringComparison.Ordinal) && File.Exists(Path.ChangeExtension(d, ".safetensors")))).ToList();
        bool InsideDiffusers(string f) => diffusers.Any(d => f.StartsWith(d + Path.DirectorySeparatorChar, StringComparison.Ordinal));
        foreach (var dir in diffusers)
            list.Add(new CheckpointEntry(Relative(dir), dir, null, CheckpointKind.Diffusers));
        foreach (var file in Directory.EnumerateFiles(Root, "*", options))
        {
            if (InsideDiffusers(file)) continue;
            var ext = Path.GetExtension(file).ToLowerInvariant();
            var kind = ext switch { ".safetensors" => CheckpointKind.SingleFile, ".ckpt" or ".pt" or ".pth" => CheckpointKind.Pickle, _ => (CheckpointKind?)null };
            if (kind is null) continue;
            // a NAME.config folder holds a tiny model's configs; never list the files inside it
            if (file.Split(Path.DirectorySeparatorChar).Any(p => p.EndsWith(".config", StringComparison.Ordinal))) continue;
            string config = Path.ChangeExtension(file, ".config");
            string name = Relative(file);
            name = name[..^Path.GetExtension(name).Length];
            list.Add(new CheckpointEntry(name, file, Directory.Exists(config) ? config : null, kind.Value));
        }
        return list.OrderBy(e => e.Name, StringComparer.OrdinalIgnoreCase).ToList();
    }

    string Relative(string path) => Path.GetRelativePath(Root, path).Replace(Path.DirectorySeparatorChar, '/');

    /// <summary>A1111's short hash (first 10 hex digits of the file's sha256); null for folders.</summary>
    public string? ShortHash(CheckpointEntry e) => e.Kind == CheckpointKind.Diffusers ? null : Hashes.ModelHash(e.Path);

    public string? Sha256(CheckpointEntry e) => e.Kind == CheckpointKind.Diffusers ? null : Hashes.Sha256(e.Path);

    /// <summary>A1111's title: "sub/name.safetensors [0123456789]".</summary>
    public string Title(CheckpointEntry e) => ShortHash(e) is { } h ? $"{e.FileName} [{h}]" : e.FileName;

    /// <summary>
    /// The entry a user means: its name, file name, A1111 title (with or without the hash), stem,
    /// short hash or sha256 (exact first, then ignoring case). Pickles are refused here.
    /// </summary>
    public CheckpointEntry Resolve(string name)
    {
        string n = name.Trim().Replace('\\', '/');
        if (n.Length == 0) throw new UserErrorException("no checkpoint named") { Field = "model" };
        if (n.StartsWith('/') || n.Split('/').Contains("..") || Path.IsPathRooted(n))
            throw new UserErrorException($"checkpoint name '{name}' must be a name in the checkpoints folder, not a path") { Field = "model" };
        // "name.safetensors [hash]" -> "name.safetensors"
        string bare = n.EndsWith(']') && n.LastIndexOf(" [", StringComparison.Ordinal) is > 0 and var cut ? n[..cut] : n;
        var entries = Entries;
        var found = Find(entries, bare, StringComparison.Ordinal) ?? Find(entries, bare, StringComparison.OrdinalIgnoreCase);
        if (found is null && bare.Length >= 8 && bare.All(Uri.IsHexDigit))
            found = entries.FirstOrDefault(e => e.Kind == CheckpointKind.SingleFile && Sha256(e)!.StartsWith(bare.ToLowerInvariant(), StringComparison.Ordinal));
        if (found is null)
        {
            var known = entries.Select(e => e.Name).Take(8).ToList();
            throw new UserErrorException(ErrorKind.NotFound, $"checkpoint '{name}' not found in {Root}" +
                (known.Count > 0 ? $" (there: {string.Join(", ", known)}{(entries.Count > known.Count ? ", …" : "")})" : " (the folder has no checkpoints)")) { Field = "model" };
        }
        if (found.Kind == CheckpointKind.Pickle)
            throw new UserErrorException(ErrorKind.Unsupported, $"checkpoint '{found.FileName}' is a pickle (.ckpt/.pt), which can run code and is not loaded; convert it to .safetensors") { Field = "model" };
        return found;
    }

    static CheckpointEntry? Find(IReadOnlyList<CheckpointEntry> entries, string n, StringComparison c) =>
        entries.FirstOrDefault(e => e.Name.Equals(n, c) || e.FileName.Equals(n, c))
        ?? (entries.Where(e => e.Stem.Equals(n, c) || Path.GetFileName(e.FileName).Equals(n, c)).ToList() is { Count: 1 } one ? one[0] : null);

    /// <summary>A checkpoint given by path (the CLI): not in the folder, but described the same way.</summary>
    public static CheckpointEntry ForPath(string path, string? configDir)
    {
        var full = Path.GetFullPath(path);
        bool folder = Directory.Exists(full);
        var kind = folder ? CheckpointKind.Diffusers
            : Path.GetExtension(full).ToLowerInvariant() is ".ckpt" or ".pt" or ".pth" or ".bin" ? CheckpointKind.Pickle : CheckpointKind.SingleFile;
        string name = Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(full));
        string? config = configDir ?? (kind == CheckpointKind.SingleFile && Directory.Exists(Path.ChangeExtension(full, ".config")) ? Path.ChangeExtension(full, ".config") : null);
        return new CheckpointEntry(name, full, config, kind);
    }
}
