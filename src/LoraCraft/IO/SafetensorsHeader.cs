using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Unicode;

namespace LoraCraft.IO;

/// <summary>
/// The parsed and validated header of a safetensors file, read without mapping the data, so that
/// listing many files stays cheap. Validation follows the reference (Rust) reader: the tensors,
/// sorted by offset, must cover the data section exactly, with no gap, no overlap and nothing
/// after the last one.
/// </summary>
public sealed class SafetensorsHeader
{
    /// <summary>The reference reader's limit; a larger length means a corrupt or foreign file.</summary>
    public const long MaxHeaderLength = 100_000_000;

    const string MetadataKey = "__metadata__";

    readonly Dictionary<string, SafeTensorInfo> _byName;

    public string Path { get; }
    /// <summary>Where the data section starts: 8 + the header length.</summary>
    public long DataOffset { get; }
    public long FileLength { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>All tensors, ordered by their offset in the data section.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    SafetensorsHeader(string path, long dataOffset, long fileLength, Dictionary<string, string> metadata, List<SafeTensorInfo> tensors)
    {
        Path = path;
        DataOffset = dataOffset;
        FileLength = fileLength;
        Metadata = metadata;
        Tensors = tensors;
        _byName = tensors.ToDictionary(t => t.Name);
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public bool TryGet(string name, out SafeTensorInfo info) => _byName.TryGetValue(name, out info!);

    public SafeTensorInfo this[string name] =>
        _byName.TryGetValue(name, out var info) ? info : throw new SafetensorsFormatException(Path, name, "no such tensor in this file");

    public static SafetensorsHeader Read(string path)
    {
        using var stream = OpenRead(path);
        return Read(stream, path);
    }

    internal static FileStream OpenRead(string path)
    {
        // Opening a folder would fail with a puzzling "access denied".
        if (Directory.Exists(path)) throw new SafetensorsFormatException(path, null, "is a folder, not a safetensors file");
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
    }

    internal static SafetensorsHeader Read(FileStream stream, string path)
    {
        SafetensorsFormatException Bad(string problem) => new(path, null, problem);

        long fileLength = stream.Length;
        if (fileLength == 0) throw Bad("empty file");
        if (fileLength < 8) throw Bad($"file is {fileLength} bytes, too short for the 8-byte header length");

        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeaderLength)
            throw Bad($"header length {headerLength} is over the {MaxHeaderLength}-byte limit (not a safetensors file?)");
        if (headerLength < 2) throw Bad($"header length {headerLength} is too small to hold a JSON object");
        long dataOffset = 8 + (long)headerLength;
        if (dataOffset > fileLength)
            throw Bad($"header length {headerLength} runs past the end of the file ({fileLength} bytes; truncated?)");

        var json = new byte[headerLength];
        stream.ReadExactly(json);
        if (!Utf8.IsValid(json)) throw Bad("header is not valid UTF-8");

        JsonDocument document;
        try { document = JsonDocument.Parse(json); }
        catch (JsonException e) { throw Bad($"header is not valid JSON: {e.Message}"); }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad($"header is a JSON {Kind(root)}, not an object");

            long dataLength = fileLength - dataOffset;
            var metadata = new Dictionary<string, string>();
            var tensors = new List<SafeTensorInfo>();
            var seen = new HashSet<string>();
            foreach (var property in root.EnumerateObject())
            {
                // JsonDocument keeps duplicate keys where a dictionary would silently keep one of them.
                if (!seen.Add(property.Name))
                    throw property.Name == MetadataKey ? Bad($"{MetadataKey} appears twice") : new SafetensorsFormatException(path, property.Name, "appears twice in the header");
                if (property.Name == MetadataKey) ReadMetadata(property.Value, metadata, path);
                else tensors.Add(ReadTensor(property.Name, property.Value, dataLength, path));
            }
            var ordered = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
            CheckCoverage(ordered, dataLength, path);
            return new SafetensorsHeader(path, dataOffset, fileLength, metadata, ordered);
        }
    }

    static void ReadMetadata(JsonElement value, Dictionary<string, string> metadata, string path)
    {
        // The reference reads an optional map, so null means "no metadata".
        if (value.ValueKind == JsonValueKind.Null) return;
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(path, null, $"{MetadataKey} is a JSON {Kind(value)}, not an object of strings");
        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw new SafetensorsFormatException(path, null, $"{MetadataKey} key '{entry.Name}' has a {Kind(entry.Value)} value; metadata values must be strings");
            if (!metadata.TryAdd(entry.Name, entry.Value.GetString()!))
                throw new SafetensorsFormatException(path, null, $"{MetadataKey} key '{entry.Name}' appears twice");
        }
    }

    static SafeTensorInfo ReadTensor(string name, JsonElement entry, long dataLength, string path)
    {
        SafetensorsFormatException Bad(string problem) => new(path, name, problem);

        if (entry.ValueKind != JsonValueKind.Object) throw Bad($"entry is a JSON {Kind(entry)}, not an object");
        JsonElement? dtype = null, shape = null, offsets = null;
        foreach (var field in entry.EnumerateObject())
        {
            switch (field.Name)
            {
                case "dtype": Take(ref dtype, field); break;
                case "shape": Take(ref shape, field); break;
                case "data_offsets": Take(ref offsets, field); break;
                // other fields are ignored, as the reference reader does
            }
        }
        void Take(ref JsonElement? slot, JsonProperty field)
        {
            if (slot is not null) throw Bad($"field \"{field.Name}\" appears twice");
            slot = field.Value;
        }

        if (dtype is not { } d) throw Bad("missing \"dtype\"");
        if (d.ValueKind != JsonValueKind.String) throw Bad($"\"dtype\" is a JSON {Kind(d)}, not a string");
        if (!SafeDTypes.TryParse(d.GetString()!, out var type))
            throw Bad($"unknown dtype '{d.GetString()}' (known: {string.Join(", ", Enum.GetNames<SafeDType>())})");

        if (shape is not { } s) throw Bad("missing \"shape\"");
        var dims = Integers(s) ?? throw Bad($"\"shape\" must be an array of non-negative integers, found {Clip(s.GetRawText())}");

        if (offsets is not { } o) throw Bad("missing \"data_offsets\"");
        var pair = Integers(o);
        if (pair is not [var begin, var end])
            throw Bad($"\"data_offsets\" must be [begin, end] with non-negative integers, found {Clip(o.GetRawText())}");
        if (begin > end) throw Bad($"data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength)
            throw Bad($"data_offsets [{begin}, {end}] run past the end of the data section ({dataLength} bytes; truncated?)");

        long needed = SafeDTypes.Size(type);
        try { foreach (var x in dims) needed = checked(needed * x); }
        catch (OverflowException) { throw Bad($"shape {Dims(dims)} is too large: its byte size overflows"); }
        if (end - begin != needed)
            throw Bad($"holds {end - begin} bytes (data_offsets [{begin}, {end}]) but {type} {Dims(dims)} needs {needed}");

        return new SafeTensorInfo(name, type, dims, begin, end);
    }

    static void CheckCoverage(List<SafeTensorInfo> ordered, long dataLength, string path)
    {
        long covered = 0;
        SafeTensorInfo? previous = null;
        foreach (var t in ordered)
        {
            if (t.Begin < covered)
                throw new SafetensorsFormatException(path, t.Name,
                    $"data_offsets [{t.Begin}, {t.End}] overlap tensor '{previous!.Name}' [{previous.Begin}, {previous.End}]");
            if (t.Begin > covered)
                throw new SafetensorsFormatException(path, t.Name,
                    $"data bytes {covered}..{t.Begin} before it belong to no tensor (the data section must be contiguous)");
            covered = t.End;
            previous = t;
        }
        if (covered != dataLength)
            throw new SafetensorsFormatException(path, null,
                $"data section is {dataLength} bytes but the tensors end at {covered}: {dataLength - covered} trailing bytes belong to no tensor");
    }

    /// <summary>The array's elements when all are non-negative 64-bit integers, else null.</summary>
    static long[]? Integers(JsonElement array)
    {
        if (array.ValueKind != JsonValueKind.Array) return null;
        var values = new long[array.GetArrayLength()];
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out var v) || v < 0) return null;
            values[i++] = v;
        }
        return values;
    }

    static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.True or JsonValueKind.False => "boolean",
        var k => k.ToString().ToLowerInvariant(),
    };

    static string Dims(long[] dims) => "[" + string.Join(", ", dims) + "]";

    static string Clip(string raw) => raw.Length <= 60 ? raw : raw[..60] + "…";
}
