using LoraCraft.Lora;

namespace LoraCraft.Server;

/// <summary>
/// Where server jobs may write: a file named by the request, directly in the LoRA folder or the
/// checkpoints folder, never a path. A name that exists is refused (409) unless forced; a forced
/// name may replace only that file, never make a second file of one name in the library.
/// </summary>
public static class FolderOutputs
{
    /// <summary>The name as given, without a `.safetensors` ending; refuses paths and odd names.</summary>
    public static string CleanName(string? name, string field = "output")
    {
        var n = name?.Trim() ?? "";
        if (n.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) n = n[..^".safetensors".Length];
        if (n.Length == 0) throw new UserErrorException("no output name given") { Field = field };
        if (n.Contains('/') || n.Contains('\\') || n.Contains("..", StringComparison.Ordinal) || n.StartsWith('.') || Path.IsPathRooted(n))
            throw new UserErrorException($"the output name '{name}' must be a plain file name, not a path") { Field = field };
        if (n.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || n.Length > 120 || n.Any(char.IsControl))
            throw new UserErrorException($"the output name '{name}' is not a valid file name (at most 120 characters, no / \\ : * ? \" < > |)") { Field = field };
        return n;
    }

    /// <summary>LORA-DIR/NAME.safetensors for a new LoRA; refused when a LoRA of that name exists (unless forced, and then only that file).</summary>
    public static string Lora(ServerEngine engine, string? name, bool force, string field = "output")
    {
        var n = CleanName(name, field);
        Directory.CreateDirectory(engine.Loras.Root);
        var target = Path.GetFullPath(Path.Combine(engine.Loras.Root, n + ".safetensors"));
        engine.Loras.Refresh();
        var same = engine.Loras.Files.Where(f => string.Equals(LoraLibrary.NameOf(f), n, StringComparison.OrdinalIgnoreCase)).ToList();
        if (same.Any(f => !string.Equals(Path.GetFullPath(f), target, StringComparison.Ordinal)))
            throw new UserErrorException(ErrorKind.Conflict, $"a LoRA named '{n}' exists already in a sub-folder of the LoRA folder: choose another name") { Field = field };
        if (File.Exists(target) && !force)
            throw new UserErrorException(ErrorKind.Conflict, $"the LoRA '{n}' exists already (force replaces it)") { Field = field };
        return target;
    }

    /// <summary>CKPT-DIR/NAME.safetensors for a new checkpoint; refused when a checkpoint of that name exists (unless forced, and then only that file).</summary>
    public static string Checkpoint(ServerEngine engine, string? name, bool force, string field = "output")
    {
        var n = CleanName(name, field);
        var target = Path.GetFullPath(Path.Combine(engine.Catalog.Root, n + ".safetensors"));
        engine.Catalog.Refresh();
        var same = engine.Catalog.Entries.Where(e => string.Equals(e.Name, n, StringComparison.OrdinalIgnoreCase)).ToList();
        if (same.Any(e => !string.Equals(Path.GetFullPath(e.Path), target, StringComparison.Ordinal)))
            throw new UserErrorException(ErrorKind.Conflict, $"a checkpoint named '{n}' exists already: choose another name") { Field = field };
        if (File.Exists(target) && !force)
            throw new UserErrorException(ErrorKind.Conflict, $"the checkpoint '{n}' exists already (force replaces it)") { Field = field };
        return target;
    }

    /// <summary>Copies <paramref name="source"/> to <paramref name="target"/> through a temporary file in the target's folder and a rename.</summary>
    public static void CopyInto(string source, string target)
    {
        var dir = Path.GetDirectoryName(target)!;
        var tmp = Path.Combine(dir, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.Copy(source, tmp);
            File.Move(tmp, target, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>The path relative to <paramref name="root"/>, '/' separated (what responses show instead of server paths).</summary>
    public static string Relative(string root, string path) => Path.GetRelativePath(root, path).Replace(Path.DirectorySeparatorChar, '/');
}
