using System.Text.Json;
using LoraCraft.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora;

/// <summary>Which low-rank scheme a module uses.</summary>
public enum LoraAlgorithm { Lora, LoCon, LoHa, LoKr }

/// <summary>
/// One adapted layer of a LoRA file: the module key as written in the file, its factors (in the
/// file's dtype) and its scale; its update is scale * up @ down (convolutions flattened, multiplied, reshaped).
/// </summary>
public sealed class LoraModule
{
    public required string Key { get; init; }
    public required Tensor Down { get; init; }
    public required Tensor Up { get; init; }
    public float? Alpha { get; init; }
    /// <summary>LyCORIS/A1111 CP-decomposed convolutions: a [rank, rank, kh, kw] core between 1x1 down and up.</summary>
    public Tensor? Mid { get; init; }
    public long Rank => Down.shape[0];

    /// <summary>How many values the rebuilt update has (the patched layer must have as many).</summary>
    public long OutputElements => Up.shape[0] * (Down.numel() / Down.shape[0]) * (Mid is null ? 1 : Mid.shape[2] * Mid.shape[3]);
    public double Scale => (Alpha ?? Rank) / Rank;
    public bool IsConv => Mid is not null || Down.dim() == 4 && (Down.shape[2] > 1 || Down.shape[3] > 1);

    /// <summary>
    /// weight += multiplier * scale * up @ down on a contiguous float32 weight, without
    /// materialising the delta (one fused multiply-add over the flattened layer).
    /// </summary>
    public void AddTo(Tensor weight, double multiplier, int? dynRank = null)
    {
        using var scope = NewDisposeScope();
        var up = Up.reshape(Up.shape[0], -1).to(ScalarType.Float32);
        var down = Down.reshape(Down.shape[0], -1).to(ScalarType.Float32);
        if (dynRank is int r && r > 0 && r < Rank)
        {
            // DyLoRA: use only the first r ranks, scale unchanged (A1111's rebuild_conventional)
            up = up[.., ..r];
            down = down[..r, ..];
        }
        if (OutputElements != weight.numel() || up.shape[0] != weight.shape[0])
            throw new LoraFormatException(Key, $"factors give {OutputElements} values, the layer has shape [{string.Join("x", weight.shape)}]");
        if (Mid is null)
        {
            weight.view(up.shape[0], down.shape[1]).addmm_(up, down, beta: 1, alpha: (float)(multiplier * Scale));
            return;
        }
        // CP: delta[o, i, k, l] = sum over n, m of up[o, n] * mid[n, m, k, l] * down[m, i] (A1111's rebuild_cp_decomposition)
        var mid = Mid.to(ScalarType.Float32);
        if (dynRank is int d && d > 0 && d < Rank) mid = mid[..d, ..d];
        var delta = torch.einsum("nmkl,on,mi->oikl", mid, up, down);
        weight.AddInPlace(delta, multiplier * Scale);
    }
}

public sealed class LoraFormatException(string where, string problem, ErrorKind kind = ErrorKind.Invalid) : UserErrorException(kind, $"{where}: {problem}");

/// <summary>
/// A LoRA file parsed into modules, whatever its writer: kohya/A1111 (`lora_unet_*`,
/// `.lora_down/.lora_up/.alpha`), diffusers (`…to_q_lora.down`, `…lora.down`,
/// `…lora_linear_layer.down`) and peft (`lora_A/lora_B`, alpha in `lora_adapter_metadata`).
/// </summary>
public sealed class LoraFile : IDisposable
{
    public required string Path { get; init; }
    public required IReadOnlyDictionary<string, string> Metadata { get; init; }
    public required IReadOnlyList<LoraModule> Modules { get; init; }
    /// <summary>Keys that are not LoRA factors we understand (DoRA scales, full diffs, ...).</summary>
    public required IReadOnlyList<string> UnknownKeys { get; init; }
    public LoraAlgorithm Algorithm => Modules.Any(m => m.IsConv) ? LoraAlgorithm.LoCon : LoraAlgorithm.Lora;
    public string Name => System.IO.Path.GetFileNameWithoutExtension(Path);

    static readonly (string Suffix, bool IsUp)[] FactorSuffixes =
    [
        (".lora_down.weight", false), (".lora_up.weight", true),
        (".lora_A.weight", false), (".lora_B.weight", true),
        (".lora.down.weight", false), (".lora.up.weight", true),
        (".lora_linear_layer.down.weight", false), (".lora_linear_layer.up.weight", true),
        ("_lora.down.weight", false), ("_lora.up.weight", true),
    ];

    public static LoraFile Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"LoRA not found: {path}", path);
        using var file = SafetensorsFile.Open(path);
        var downs = new Dictionary<string, Tensor>();
        var mids = new Dictionary<string, Tensor>();
        var ups = new Dictionary<string, Tensor>();
        var alphas = new Dictionary<string, float>();
        var unknown = new List<string>();
        foreach (var info in file.Tensors)
        {
            string name = info.Name;
            if (name.EndsWith(".alpha", StringComparison.Ordinal))
            {
                using var a = file.Load(name, ScalarType.Float32);
                alphas[Normalize(name[..^".alpha".Length])] = a.numel() == 1 ? a.item<float>()
                    : throw new LoraFormatException(path, $"tensor '{name}' should hold one number");
                continue;
            }
            if (name.EndsWith(".lora_mid.weight", StringComparison.Ordinal))
            {
                mids[Normalize(name[..^".lora_mid.weight".Length])] = file.Load(name).DetachFromDisposeScope();
                continue;
            }
            if (name.StartsWith("bundle_emb.", StringComparison.Ordinal)) continue; // bundled textual inversions: Text.Embeddings reads them
            if (FactorSuffix(name) is not { } factor) { unknown.Add(name); continue; }
            string key = Normalize(name[..^factor.Length]);
            // owned by this LoraFile, never by a caller's dispose scope
            // kept in the stored dtype (half the memory of float32 for fp16 files); AddTo widens per layer
            (factor.IsUp ? ups : downs)[key] = file.Load(name).DetachFromDisposeScope();
        }
        var peftAlpha = PeftAlphas(file.Metadata);
        var modules = new List<LoraModule>();
        foreach (var (key, down) in downs)
        {
            if (!ups.TryGetValue(key, out var up)) { unknown.Add(key + " (down without up)"); down.Dispose(); continue; }
            float? alpha = alphas.TryGetValue(key, out var a) ? a : PeftAlpha(peftAlpha, key);
            modules.Add(new LoraModule { Key = key, Down = down, Up = up, Alpha = alpha, Mid = mids.GetValueOrDefault(key) });
        }
        foreach (var key in ups.Keys.Where(k => !downs.ContainsKey(k))) { unknown.Add(key + " (up without down)"); ups[key].Dispose(); }
        foreach (var key in mids.Keys.Where(k => !downs.ContainsKey(k) || !ups.ContainsKey(k))) { unknown.Add(key + " (mid without down and up)"); mids[key].Dispose(); }
        if (modules.Count == 0)
            throw new LoraFormatException(path, "no LoRA modules found (expected keys like '….lora_down.weight' or '….lora_A.weight')");
        return new LoraFile { Path = path, Metadata = file.Metadata, Modules = modules, UnknownKeys = unknown };
    }

    /// <summary>
    /// The length of a factor tensor's suffix and whether it is the up factor; null for anything
    /// else. Shared with <see cref="LoraInfo"/>, which reads headers only.
    /// </summary>
    internal static (int Length, bool IsUp)? FactorSuffix(string tensorName)
    {
        foreach (var (suffix, up) in FactorSuffixes)
            if (tensorName.EndsWith(suffix, StringComparison.Ordinal)) return (suffix.Length, up);
        return null;
    }

    /// <summary>Old diffusers attention-processor keys onto module names: `attn1.processor.to_q_lora` -> `attn1.to_q`.</summary>
    internal static string Normalize(string key)
    {
        key = key.Replace(".processor.", ".", StringComparison.Ordinal);
        foreach (var p in new[] { "to_q", "to_k", "to_v" })
            if (key.EndsWith("." + p + "_lora", StringComparison.Ordinal)) return key[..^5];
        if (key.EndsWith(".to_out_lora", StringComparison.Ordinal)) return key[..^"_lora".Length] + ".0";
        return key;
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
        foreach (var m in Modules)
        {
            m.Down.Dispose();
            m.Up.Dispose();
            m.Mid?.Dispose();
        }
    }
}
