using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora.Adapters;
using LoraCraft.Models;
using Microsoft.Win32.SafeHandles;

namespace LoraCraft.Lora;

/// <summary>How many modules of a LoRA file patch each part of a model, judged by key prefix.</summary>
public sealed record LoraModuleCounts(int UNet, int TextEncoder1, int TextEncoder2, int Other)
{
    public int Total => UNet + TextEncoder1 + TextEncoder2 + Other;
}

/// <summary>One file of a listing: its summary, or why it could not be read.</summary>
public sealed record LoraListing(string Path, LoraInfo? Info, string? Error);

/// <summary>Where a LoRA's trigger words came from and what they are.</summary>
public sealed record LoraTriggers(string Source, IReadOnlyList<string> Words);

/// <summary>
/// What a LoRA file is, read from its safetensors header and sidecar files only (plus the few
/// bytes of its one-number `.alpha` tensors), so that a folder of thousands lists in a moment.
/// </summary>
public sealed class LoraInfo
{
    public required string Path { get; init; }
    public string Name => System.IO.Path.GetFileNameWithoutExtension(Path);
    public required long SizeBytes { get; init; }
    public required ModelFamily? Family { get; init; }
    public required LoraAlgorithm Algorithm { get; init; }
    /// <summary>How many modules use each type (a LyCORIS file may mix LoHa with full diffs and norms).</summary>
    public IReadOnlyDictionary<LoraAlgorithm, int> Algorithms { get; init; } = new Dictionary<LoraAlgorithm, int>();
    /// <summary>Whether any module carries DoRA magnitudes.</summary>
    public bool Dora { get; init; }
    /// <summary>The most common rank over the modules; null when no module shows one (LoKr without factors).</summary>
    public required long? Rank { get; init; }
    /// <summary>The most common alpha; null when the file gives none (then alpha = rank, scale 1).</summary>
    public required double? Alpha { get; init; }
    public required LoraModuleCounts Modules { get; init; }
    /// <summary>Tensors that belong to no module of a known type (they are ignored when loading).</summary>
    public required int UnknownTensors { get; init; }
    public required string? Title { get; init; }
    public required LoraTriggers? Triggers { get; init; }
    /// <summary>A1111's LoRA hash (12 hex digits); null when not asked for.</summary>
    public required string? Hash { get; init; }
    public required IReadOnlyDictionary<string, string> Metadata { get; init; }

    /// <summary>
    /// Reads <paramref name="path"/>; with <paramref name="hashes"/>, its LoRA hash too (cached
    /// there). Throws <see cref="LoraFormatException"/> for a safetensors file that holds no LoRA.
    /// </summary>
    public static LoraInfo Read(string path, FileHashes? hashes = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"LoRA not found: {path}", path);
        using var stream = SafetensorsHeader.OpenRead(path);
        var header = SafetensorsHeader.Read(stream, path);

        // the same parser as loading: what is listed is what loads
        var byName = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var layout = AdapterFormats.Layout(header.Tensors.Select(t => (t.Name, t.Shape)));
        var modules = layout.Modules.Select(m => m.Key).ToList();
        if (modules.Count == 0)
            throw new LoraFormatException(path, $"not a LoRA: none of its {header.Tensors.Count} tensors is a LoRA factor (a checkpoint, VAE or embedding?)");
        var ranks = layout.Modules.Where(m => m.Rank is not null).ToDictionary(m => m.Key, m => m.Rank!.Value, StringComparer.Ordinal);
        var alphaTensors = layout.Modules
            .Select(m => m.Parts.TryGetValue(AdapterFormats.Alpha, out var a) ? byName[a.Tensor] : null)
            .OfType<SafeTensorInfo>().Where(t => t.ElementCount == 1 && t.ByteLength <= 8).OrderBy(t => t.Begin).ToList();
        // kohya's per-module alpha tensors, else peft's adapter config, else kohya's metadata
        var alphas = ReadAlphas(stream.SafeFileHandle, header.DataOffset, alphaTensors);
        if (alphas.Count == 0)
        {
            var peft = LoraFile.PeftAlphas(header.Metadata);
            alphas.AddRange(ranks.Keys.Select(m => LoraFile.PeftAlpha(peft, m)).OfType<float>().Select(a => (double)a));
        }
        double? alpha = alphas.Count > 0 ? MostCommon(alphas)
            : double.TryParse(header.Metadata.GetValueOrDefault("ss_network_alpha"), NumberStyles.Float, CultureInfo.InvariantCulture, out var ma) ? ma
            : null;
        int unet = 0, te1 = 0, te2 = 0, other = 0;
        foreach (var m in modules)
        {
            switch (ComponentOf(m))
            {
                case LoraComponent.UNet: unet++; break;
                case LoraComponent.TextEncoder1: te1++; break;
                case LoraComponent.TextEncoder2: te2++; break;
                default: other++; break;
            }
        }
        return new LoraInfo
        {
            Path = path,
            SizeBytes = header.FileLength,
            Family = LoraFamilyGuess.Guess(layout.Modules.Select(m => (m.Key, LoraFamilyGuess.WidthShape(m.Rank, m.InputWidth))), header.Metadata),
            Algorithm = LoraAlgorithms.OfFile(layout.Modules.Select(m => m.Algorithm)),
            Algorithms = layout.Modules.GroupBy(m => m.Algorithm).OrderBy(g => g.Key).ToDictionary(g => g.Key, g => g.Count()),
            Dora = layout.Modules.Any(m => m.IsDora),
            Rank = ranks.Count > 0 ? MostCommon(ranks.Values) : null,
            Alpha = alpha,
            Modules = new LoraModuleCounts(unet, te1, te2, other),
            UnknownTensors = layout.Unknown.Count,
            Title = header.Metadata.GetValueOrDefault("modelspec.title") is { Length: > 0 } title ? title : header.Metadata.GetValueOrDefault("ss_output_name"),
            Triggers = FindTriggers(path, header.Metadata),
            Hash = hashes?.LoraHash(header),
            Metadata = header.Metadata,
        };
    }

    /// <summary>
    /// Every file of <paramref name="library"/>, in its order, read in parallel; a file that is
    /// not a readable LoRA gets its error instead of hiding the others (see <see cref="LoraLibrary.Listings"/>).
    /// </summary>
    public static IReadOnlyList<LoraListing> List(LoraLibrary library, FileHashes? hashes = null) => library.Listings(hashes);

    /// <summary>The model part a module key addresses, from its prefix; null when the prefix is unknown.</summary>
    public static LoraComponent? ComponentOf(string key)
    {
        static bool Starts(string key, params string[] prefixes) => prefixes.Any(p => key.StartsWith(p, StringComparison.Ordinal));
        if (Starts(key, "lora_unet_", "unet.", "diffusion_model.", "model.diffusion_model.")) return LoraComponent.UNet;
        if (Starts(key, "lora_te2_", "text_encoder_2.")) return LoraComponent.TextEncoder2;
        if (Starts(key, "lora_te_", "lora_te1_", "text_encoder.")) return LoraComponent.TextEncoder1;
        return null;
    }

    /// <summary>
    /// kohya's `ss_tag_frequency` ({dataset: {tag: count}}) summed over datasets, most frequent
    /// first; empty when absent or malformed. The captions' top tags are usually the trigger words.
    /// </summary>
    public IReadOnlyList<(string Tag, long Count)> TopTags(int count = 20)
    {
        if (!Metadata.TryGetValue("ss_tag_frequency", out var json)) return [];
        var sums = new Dictionary<string, long>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return [];
            foreach (var dataset in doc.RootElement.EnumerateObject())
            {
                if (dataset.Value.ValueKind != JsonValueKind.Object) continue;
                foreach (var tag in dataset.Value.EnumerateObject())
                {
                    // kohya keeps the space after each caption comma: " cloud" and "cloud" are one tag
                    string name = tag.Name.Trim();
                    if (name.Length == 0 || !tag.Value.TryGetInt64(out long n)) continue;
                    sums[name] = sums.GetValueOrDefault(name) + n;
                }
            }
        }
        catch (JsonException) { return []; }
        return sums.OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal).Take(count).Select(p => (p.Key, p.Value)).ToList();
    }

    /// <summary>
    /// `modelspec.trigger_phrase`, else the sidecars beside the file (<see cref="LoraSidecars.Triggers"/>:
    /// Civitai's `NAME.civitai.info`, then A1111's `NAME.json`).
    /// </summary>
    static LoraTriggers? FindTriggers(string path, IReadOnlyDictionary<string, string> metadata) =>
        metadata.GetValueOrDefault("modelspec.trigger_phrase") is { } phrase && LoraSidecars.SplitWords(phrase) is { Count: > 0 } words
            ? new LoraTriggers("modelspec.trigger_phrase", words)
            : LoraSidecars.Triggers(path);

    /// <summary>
    /// The values of one-number alpha tensors (in offset order). Tensors close together are read
    /// with one call: small files then cost a few reads, not one per module.
    /// </summary>
    static List<double> ReadAlphas(SafeFileHandle file, long dataOffset, List<SafeTensorInfo> tensors)
    {
        const int Window = 1 << 16;
        var values = new List<double>(tensors.Count);
        var buffer = ArrayPool<byte>.Shared.Rent(Window);
        try
        {
            for (int i = 0; i < tensors.Count;)
            {
                long start = tensors[i].Begin;
                int j = i;
                while (j < tensors.Count && tensors[j].End - start <= Window) j++;
                int length = (int)(tensors[j - 1].End - start);
                RandomAccess.Read(file, buffer.AsSpan(0, length), dataOffset + start);
                for (; i < j; i++)
                    if (Decode(tensors[i].DType, buffer.AsSpan((int)(tensors[i].Begin - start), (int)tensors[i].ByteLength)) is { } v) values.Add(v);
            }
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
        return values;
    }

    static double? Decode(SafeDType type, ReadOnlySpan<byte> b) => type switch
    {
        SafeDType.F16 => (double)BinaryPrimitives.ReadHalfLittleEndian(b),
        SafeDType.BF16 => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(b) << 16),
        SafeDType.F32 => BinaryPrimitives.ReadSingleLittleEndian(b),
        SafeDType.F64 => BinaryPrimitives.ReadDoubleLittleEndian(b),
        _ => null,
    };

    /// <summary>The most frequent value; ties go to the larger one.</summary>
    static T MostCommon<T>(IEnumerable<T> values) where T : notnull =>
        values.GroupBy(v => v).OrderByDescending(g => g.Count()).ThenByDescending(g => g.Key).First().Key;
}
