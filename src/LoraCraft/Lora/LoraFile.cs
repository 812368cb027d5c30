using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora;

public sealed class LoraFormatException(string where, string problem, ErrorKind kind = ErrorKind.Invalid) : UserErrorException(kind, $"{where}: {problem}");

/// <summary>
/// An adapter file parsed into modules, whatever its writer and type: kohya/A1111 LoRA and
/// LoCon, diffusers and peft LoRA, LyCORIS LoHa, LoKr, (IA)³, full diffs, norms, GLoRA, OFT and
/// BOFT, with DoRA magnitudes on any of them (<see cref="AdapterFormats"/> decides).
/// </summary>
public sealed class LoraFile : IDisposable
{
    public required string Path { get; init; }
    public required IReadOnlyDictionary<string, string> Metadata { get; init; }
    public required IReadOnlyList<AdapterModule> Modules { get; init; }
    /// <summary>Tensors no module type reads (unknown parts, alphas without factors, ...).</summary>
    public required IReadOnlyList<string> UnknownKeys { get; init; }
    public LoraAlgorithm Algorithm => LoraAlgorithms.OfFile(Modules.Select(m => m.Algorithm));
    public string Name => System.IO.Path.GetFileNameWithoutExtension(Path);

    public static LoraFile Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"LoRA not found: {path}", path);
        using var file = SafetensorsFile.Open(path);
        var layout = AdapterFormats.Layout(file.Tensors.Select(t => (t.Name, t.Shape)));
        if (layout.Modules.Count == 0)
            throw new LoraFormatException(path, "no LoRA modules found (expected keys like '….lora_down.weight', '….lora_A.weight' or LyCORIS '….hada_w1_a')");
        var peftAlpha = PeftAlphas(file.Metadata);
        var modules = new List<AdapterModule>();
        try
        {
            foreach (var m in layout.Modules)
            {
                // owned by this LoraFile, never by a caller's dispose scope; kept in the stored dtype
                // (half the memory of float32 for fp16 files), widened per layer when applied
                Tensor Read(string part) => file.Load(m.Parts[part].Tensor).DetachFromDisposeScope();
                float? alpha = m.Parts.TryGetValue(AdapterFormats.Alpha, out var a) ? ReadAlpha(file, a.Tensor, path) : PeftAlpha(peftAlpha, m.Key);
                Tensor? dora = m.Parts.ContainsKey(AdapterFormats.DoraScale) ? Read(AdapterFormats.DoraScale)
                    // peft's magnitude is per output row: [out] -> [out, 1] says so whatever the weight's width
                    : m.Parts.ContainsKey(AdapterFormats.DoraMagnitude) ? AsColumn(Read(AdapterFormats.DoraMagnitude))
                    : null;
                var shapes = m.Shapes.Where(p => p.Key is not (AdapterFormats.Alpha or AdapterFormats.DoraScale or AdapterFormats.DoraMagnitude))
                    .ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
                modules.Add(m.Format.Load(m.Key, shapes, Read, alpha, dora));
            }
        }
        catch
        {
            foreach (var m in modules) m.Dispose();
            throw;
        }
        return new LoraFile { Path = path, Metadata = file.Metadata, Modules = modules, UnknownKeys = layout.Unknown };
    }

    static Tensor AsColumn(Tensor vector)
    {
        using (vector) return vector.reshape(-1, 1).DetachFromDisposeScope();
    }

    static float ReadAlpha(SafetensorsFile file, string name, string path)
    {
        using var a = file.Load(name, ScalarType.Float32);
        return a.numel() == 1 ? a.item<float>() : throw new LoraFormatException(path, $"tensor '{name}' should hold one number");
    }

    /// <summary>peft's `lora_adapter_metadata`: `<component>.lora_alpha` / `.r` and per-module patterns.</summary>
    internal static Dictionary<string, JsonElement> PeftAlphas(IReadOnlyDictionary<string, string> metadata)
    {
        var result = new Dictionary<string, JsonElement>();
        if (!metadata.TryGetValue("lora_adapter_metadata", out var json)) return result;
        try
        {
            using var doc = JsonDocument.Parse(json);
            foreach (var p in doc.RootElement.EnumerateObject()) result[p.Name] = p.Value.Clone();
        }
        catch (JsonException) { }
        return result;
    }

    internal static float? PeftAlpha(Dictionary<string, JsonElement> meta, string key)
    {
        if (meta.Count == 0) return null;
        int dot = key.IndexOf('.');
        string component = dot > 0 ? key[..dot] : "";
        string module = dot > 0 ? key[(dot + 1)..] : key;
        // alpha_pattern entries override the component's lora_alpha for matching module names
        if (meta.TryGetValue(component + ".alpha_pattern", out var pattern) && pattern.ValueKind == JsonValueKind.Object)
            foreach (var p in pattern.EnumerateObject())
                if (module == p.Name || module.EndsWith("." + p.Name, StringComparison.Ordinal)) return (float)p.Value.GetDouble();
        if (meta.TryGetValue(component + ".lora_alpha", out var alpha) && alpha.ValueKind == JsonValueKind.Number) return (float)alpha.GetDouble();
        if (meta.TryGetValue("lora_alpha", out var a) && a.ValueKind == JsonValueKind.Number) return (float)a.GetDouble();
        return null;
    }

    public void Dispose()
    {
        foreach (var m in Modules) m.Dispose();
    }
}
