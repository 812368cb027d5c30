namespace LoraCraft.Lora.Adapters;

/// <summary>A module as a file lays it out: its key, its type, and its parts (part -> tensor name and shape).</summary>
public sealed record ModuleLayout(string Key, AdapterFormat Format, IReadOnlyDictionary<string, (string Tensor, long[] Shape)> Parts)
{
    public IReadOnlyDictionary<string, long[]> Shapes => Parts.ToDictionary(p => p.Key, p => p.Value.Shape);
    public LoraAlgorithm Algorithm => Format.Algorithm(Shapes);
    public long? Rank => Format.Rank(Shapes);
    public long? InputWidth => Format.InputWidth(Shapes);
    public bool IsDora => Parts.ContainsKey(AdapterFormats.DoraScale) || Parts.ContainsKey(AdapterFormats.DoraMagnitude);
}

/// <summary>Every module of a file and the tensors that belong to none.</summary>
public sealed record AdapterLayout(IReadOnlyList<ModuleLayout> Modules, IReadOnlyList<string> Unknown);

/// <summary>
/// The one parser of adapter files (ComfyUI's `adapters` list): tensor names are split into a
/// module key and a part by the longest known suffix, parts are grouped per module, and each
/// module goes to the first type that claims it. Loading (<see cref="LoraFile"/>) and header-only
/// listing (<see cref="LoraInfo"/>) both use <see cref="Layout"/>, so what is listed is what loads.
/// </summary>
public static class AdapterFormats
{
    /// <summary>Parts every type may carry: alpha, DoRA magnitudes (kohya/LyCORIS `dora_scale`, peft `lora_magnitude_vector`).</summary>
    public const string Alpha = "alpha", DoraScale = "dora_scale", DoraMagnitude = "lora_magnitude_vector";

    public static IReadOnlyList<AdapterFormat> All { get; } =
    [
        LoraAdapter.FileFormat, LoHaAdapter.FileFormat, LoKrAdapter.FileFormat, GLoraAdapter.FileFormat,
        OftAdapter.FileFormat, BoftAdapter.FileFormat, IA3Adapter.FileFormat, FullDiffAdapter.FileFormat, NormAdapter.FileFormat,
    ];

    static readonly (string Suffix, string Part)[] Suffixes = All.SelectMany(f => f.Suffixes)
        .Concat(new (string Suffix, string Part)[] { ("." + Alpha, Alpha), ("." + DoraScale, DoraScale), ("." + DoraMagnitude, DoraMagnitude), ("." + DoraMagnitude + ".weight", DoraMagnitude) })
        .Distinct().OrderByDescending(s => s.Suffix.Length).ThenBy(s => s.Suffix, StringComparer.Ordinal).ToArray();

    /// <summary>The module key and part of a tensor name, by its longest known suffix; false for names no type knows.</summary>
    public static bool Claims(string tensorName, out string moduleKey, out string part)
    {
        foreach (var (suffix, p) in Suffixes)
        {
            if (tensorName.Length <= suffix.Length || !tensorName.EndsWith(suffix, StringComparison.Ordinal)) continue;
            moduleKey = NormalizeKey(tensorName[..^suffix.Length]);
            part = p;
            return true;
        }
        moduleKey = part = "";
        return false;
    }

    /// <summary>Groups <paramref name="tensors"/> (name, shape) into modules, in file order of first appearance.</summary>
    public static AdapterLayout Layout(IEnumerable<(string Name, long[] Shape)> tensors)
    {
        var unknown = new List<string>();
        var groups = new Dictionary<string, Dictionary<string, (string, long[])>>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var (name, shape) in tensors)
        {
            // bundled textual inversions (A1111's bundle_emb.NAME.*): Text.Embeddings reads them
            if (name.StartsWith("bundle_emb.", StringComparison.Ordinal)) continue;
            if (!Claims(name, out var key, out var part)) { unknown.Add(name); continue; }
            if (!groups.TryGetValue(key, out var parts)) { groups[key] = parts = new(StringComparer.Ordinal); order.Add(key); }
            // two spellings of one part (lora_A and lora_down) in one module: the first wins, the other is unknown
            if (!parts.TryAdd(part, (name, shape))) unknown.Add(name);
        }
        var modules = new List<ModuleLayout>();
        foreach (var key in order)
        {
            var parts = groups[key];
            var shapes = parts.ToDictionary(p => p.Key, p => p.Value.Item2, StringComparer.Ordinal);
            ModuleLayout? module = null;
            foreach (var format in All)
            {
                if (format.Claim(shapes) is not { } used) continue;
                var kept = used.Concat([Alpha, DoraScale, DoraMagnitude]).Where(parts.ContainsKey).Distinct()
                    .ToDictionary(p => p, p => parts[p], StringComparer.Ordinal);
                module = new ModuleLayout(key, format, kept);
                break;
            }
            if (module is not null) modules.Add(module);
            unknown.AddRange(parts.Where(p => module is null || !module.Parts.ContainsKey(p.Key)).Select(p => p.Value.Item1));
        }
        return new AdapterLayout(modules, unknown);
    }

    /// <summary>
    /// Old diffusers attention-processor keys onto module names (`attn1.processor.to_q_lora` ->
    /// `attn1.to_q`, `to_out_lora` -> `to_out.0`), kohya's OFT prefix onto the LoRA one.
    /// </summary>
    public static string NormalizeKey(string key)
    {
        key = key.Replace(".processor.", ".", StringComparison.Ordinal);
        if (key.StartsWith("oft_unet_", StringComparison.Ordinal)) key = "lora_unet_" + key["oft_unet_".Length..];
        foreach (var p in new[] { "to_q", "to_k", "to_v" })
            if (key.EndsWith("." + p + "_lora", StringComparison.Ordinal)) return key[..^5];
        if (key.EndsWith(".to_out_lora", StringComparison.Ordinal)) return key[..^"_lora".Length] + ".0";
        if (key.EndsWith(".to_out", StringComparison.Ordinal)) return key + ".0";
        return key;
    }
}
