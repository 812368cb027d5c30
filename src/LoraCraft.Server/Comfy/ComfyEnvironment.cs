using LoraCraft.Generation;

namespace LoraCraft.Server.Comfy;

/// <summary>
/// What the ComfyUI layer works with: the shared engine, ComfyUI's folders (input, temp and the
/// user folder under <see cref="ServerOptions.DataDir"/>; output = the server's outputs folder),
/// the node classes and the lists their combos show.
/// </summary>
public sealed class ComfyEnvironment
{
    public ComfyEnvironment(ServerEngine engine, ServerOptions options)
    {
        Engine = engine;
        Options = options;
        var data = Path.GetFullPath(options.DataDir);
        InputDir = Path.Combine(data, "input");
        TempDir = Path.Combine(data, "temp");
        UserDir = Path.Combine(data, "default");
        OutputDir = engine.Outputs.Root;
        Lists = new NodeLists(CheckpointNames, LoraNames, InputImages);
        Nodes = ComfyNodes.All(this).ToDictionary(n => n.Name, StringComparer.Ordinal);
    }

    public ServerEngine Engine { get; }
    public ServerOptions Options { get; }
    public string InputDir { get; }
    public string TempDir { get; }
    public string OutputDir { get; }
    /// <summary>ComfyUI's user/default: comfy.settings.json, workflows/ …</summary>
    public string UserDir { get; }
    public NodeLists Lists { get; }
    public IReadOnlyDictionary<string, NodeDefinition> Nodes { get; }

    /// <summary>The checkpoints as ComfyUI lists them: file names relative to the folder ("sub/name.safetensors"), pickles left out.</summary>
    public IReadOnlyList<string> CheckpointNames() =>
        Engine.Catalog.Entries.Where(e => e.Kind != CheckpointKind.Pickle).Select(e => e.FileName).ToList();

    public CheckpointEntry Checkpoint(string name) =>
        Engine.Catalog.Entries.FirstOrDefault(e => e.Kind != CheckpointKind.Pickle && e.FileName == name) ?? Engine.Catalog.Resolve(name);

    /// <summary>The LoRA folder's files, relative and '/'-separated, as LoraLoader lists them.</summary>
    public IReadOnlyList<string> LoraNames() =>
        Engine.Loras.Files.Select(f => Path.GetRelativePath(Engine.Loras.Root, f).Replace(Path.DirectorySeparatorChar, '/')).ToList();

    public string LoraPath(string name) =>
        Engine.Loras.Files.FirstOrDefault(f => Path.GetRelativePath(Engine.Loras.Root, f).Replace(Path.DirectorySeparatorChar, '/') == name)
        ?? throw new UserErrorException(ErrorKind.NotFound, $"LoRA '{name}' is not in {Engine.Loras.Root}") { Field = "lora_name" };

    static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"];

    /// <summary>The input folder's images (top level, as LoadImage lists them).</summary>
    public IReadOnlyList<string> InputImages()
    {
        if (!Directory.Exists(InputDir)) return [];
        return Directory.EnumerateFiles(InputDir).Select(Path.GetFileName).OfType<string>()
            .Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>The folder of a ComfyUI file type ("input", "output", "temp"), null for any other.</summary>
    public string? FolderOf(string? type) => type switch
    {
        null or "" or "output" => OutputDir,
        "input" => InputDir,
        "temp" => TempDir,
        _ => null,
    };

    /// <summary>
    /// A LoadImage value ("name.png", "clipspace/x.png [input]", "y.png [output]") as a path
    /// inside its folder; null when it names something outside it or a folder that does not exist.
    /// </summary>
    public string? AnnotatedPath(string value, string defaultType = "input")
    {
        string name = value.Trim(), type = defaultType;
        foreach (var t in new[] { "input", "output", "temp" })
            if (name.EndsWith($" [{t}]", StringComparison.Ordinal))
            {
                name = name[..^(t.Length + 3)];
                type = t;
            }
        var root = FolderOf(type);
        if (root is null || !SafePaths.IsSafeRelative(name)) return null;
        var full = Path.GetFullPath(Path.Combine(root, name));
        return SafePaths.IsInside(root, full) ? full : null;
    }
}
