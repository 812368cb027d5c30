using LoraCraft.Models;

namespace LoraCraft.Text.Embeddings;

/// <summary>
/// What listings show of one embedding (plain data, for `embeddings list`, A1111's
/// `/sdapi/v1/embeddings`, ComfyUI's `/embeddings` and the web UI). <see cref="Shape"/> is A1111's
/// (the width; SDXL: both widths added); <see cref="Step"/>, <see cref="SdCheckpoint"/> and
/// <see cref="SdCheckpointName"/> come from the file's metadata when it has them.
/// </summary>
public sealed record EmbeddingInfo(
    string Name, string Path, int Vectors, int Shape, IReadOnlyDictionary<string, int> Widths, string? Family,
    string? Problem, int? Step, string? SdCheckpoint, string? SdCheckpointName)
{
    public static EmbeddingInfo Of(TextualInversion e) => new(
        e.Name, e.Path, e.Vectors, e.Shape, e.Widths, e.Family, e.Problem,
        e.Metadata.TryGetValue("step", out var s) && int.TryParse(s, out int step) ? step : null,
        e.Metadata.GetValueOrDefault("sd_checkpoint"), e.Metadata.GetValueOrDefault("sd_checkpoint_name"));
}

/// <summary>
/// The user's textual-inversion folder (A1111's `embeddings`, default `./models/embeddings`),
/// searched recursively. Names are file stems; when two files share a stem a `.safetensors` one
/// is used before a pickle, then the first in path order. `.safetensors` files are read; `.pt`/`.bin` pickles are listed and refused.
/// </summary>
public sealed class EmbeddingLibrary
{
    public static readonly string[] Extensions = [".safetensors", ".pt", ".bin"];
    public static string DefaultRoot => System.IO.Path.Combine("models", "embeddings");

    public string Root { get; }
    readonly Lazy<IReadOnlyList<TextualInversion>> _all;

    public EmbeddingLibrary(string root)
    {
        Root = root;
        _all = new(() => Scan(root));
    }

    /// <summary>Every embedding file, in path order (a later file with an already used name is left out).</summary>
    public IReadOnlyList<TextualInversion> Embeddings => _all.Value;

    /// <summary>The listing, every file's entry as plain data.</summary>
    public IReadOnlyList<EmbeddingInfo> List() => Embeddings.Select(EmbeddingInfo.Of).ToList();

    /// <summary>A1111's split of the listing for a loaded model: usable ones and the rest with the reason.</summary>
    public (IReadOnlyList<EmbeddingInfo> Loaded, IReadOnlyList<(EmbeddingInfo Info, string Reason)> Skipped) ForModel(StableDiffusionModel model)
    {
        var loaded = new List<EmbeddingInfo>();
        var skipped = new List<(EmbeddingInfo, string)>();
        foreach (var e in Embeddings)
        {
            if (e.MismatchFor(model) is { } reason) skipped.Add((EmbeddingInfo.Of(e), reason));
            else loaded.Add(EmbeddingInfo.Of(e));
        }
        return (loaded, skipped);
    }

    /// <summary>All of them as the set a generation uses.</summary>
    public EmbeddingSet ToSet() => new(Embeddings);

    static IReadOnlyList<TextualInversion> Scan(string root)
    {
        if (!Directory.Exists(root)) return [];
        var files = Directory.EnumerateFiles(root, "*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true })
            .Where(f => Extensions.Contains(System.IO.Path.GetExtension(f).ToLowerInvariant()))
            // a .safetensors copy beside a pickle of the same name is the one used
            .OrderBy(f => System.IO.Path.GetExtension(f).ToLowerInvariant() != ".safetensors")
            .ThenBy(f => f, StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var result = new List<TextualInversion>();
        foreach (var file in files)
            if (seen.Add(System.IO.Path.GetFileNameWithoutExtension(file)))
                result.Add(TextualInversion.FromFile(file));
        return result.OrderBy(e => e.Path, StringComparer.Ordinal).ToList();
    }
}
