using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
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

    SafetensorsHeader(string path, long dataOffset, long fileLength, Dictionary<string, string> metadata, List<SafeTensorInfo> tensors,
                      Dictionary<string, SafeTensorInfo> byName)
    {
        Path = path;
        DataOffset = dataOffset;
        FileLength = fileLength;
        Metadata = metadata;
        Tensors = tensors;
        _byName = byName;
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

        long dataLength = fileLength - dataOffset;
        var metadata = new Dictionary<string, string>();
        var byName = new Dictionary<string, SafeTensorInfo>();
        bool hasMetadata = false;
        // One forward pass with a reader rather than a JsonDocument: a LoRA folder is listed by
        // parsing thousands of headers of hundreds of entries each.
        var reader = new Utf8JsonReader(json);
        try
        {
            reader.Read();
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                string kind = Kind(reader.TokenType);
                SkipToEnd(ref reader); // invalid JSON is reported as such, whatever its first token
                throw Bad($"header is a JSON {kind}, not an object");
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string name = reader.GetString()!;
                reader.Read();
                // JSON allows duplicate keys, where a dictionary would silently keep one of them.
                if (name == MetadataKey)
                {
                    if (hasMetadata) throw Bad($"{MetadataKey} appears twice");
                    hasMetadata = true;
                    ReadMetadata(ref reader, metadata, path);
                    continue;
                }
                ref var slot = ref CollectionsMarshal.GetValueRefOrAddDefault(byName, name, out bool exists);
                if (exists) throw new SafetensorsFormatException(path, name, "appears twice in the header");
                slot = ReadTensor(ref reader, json, name, dataLength, path);
            }
            SkipToEnd(ref reader);
        }
        catch (JsonException e) { throw Bad($"header is not valid JSON: {e.Message}"); }

        var ordered = byName.Values.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        CheckCoverage(ordered, dataLength, path);
        return new SafetensorsHeader(path, dataOffset, fileLength, metadata, ordered, byName);
    }

    /// <summary>Reads whatever is left, so that a syntax error after the point reached still counts.</summary>
    static void SkipToEnd(ref Utf8JsonReader reader)
    {
        while (reader.Read()) { }
    }

    static void ReadMetadata(ref Utf8JsonReader reader, Dictionary<string, string> metadata, string path)
    {
        // The reference reads an optional map, so null means "no metadata".
        if (reader.TokenType == JsonTokenType.Null) return;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new SafetensorsFormatException(path, null, $"{MetadataKey} is a JSON {Kind(reader.TokenType)}, not an object of strings");
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string key = reader.GetString()!;
            reader.Read();
            if (reader.TokenType != JsonTokenType.String)
                throw new SafetensorsFormatException(path, null, $"{MetadataKey} key '{key}' has a {Kind(reader.TokenType)} value; metadata values must be strings");
            if (!metadata.TryAdd(key, reader.GetString()!))
                throw new SafetensorsFormatException(path, null, $"{MetadataKey} key '{key}' appears twice");
        }
    }

    /// <summary>A field of a tensor entry as read: its JSON kind, where its text is, and its value when well-formed.</summary>
    struct Field
    {
        public bool Present;
        public JsonTokenType Kind;
        public int Start, End;
        public string? Text;
        public long[]? Numbers;
    }

    static SafeTensorInfo ReadTensor(ref Utf8JsonReader reader, byte[] json, string name, long dataLength, string path)
    {
        SafetensorsFormatException Bad(string problem) => new(path, name, problem);

        if (reader.TokenType != JsonTokenType.StartObject) throw Bad($"entry is a JSON {Kind(reader.TokenType)}, not an object");
        Field dtype = default, shape = default, offsets = default;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("dtype"u8))
            {
                Open(ref reader, ref dtype, "dtype");
                if (reader.TokenType == JsonTokenType.String) dtype.Text = reader.GetString();
                Close(ref reader, ref dtype);
            }
            else if (reader.ValueTextEquals("shape"u8))
            {
                Open(ref reader, ref shape, "shape");
                shape.Numbers = Integers(ref reader);
                Close(ref reader, ref shape);
            }
            else if (reader.ValueTextEquals("data_offsets"u8))
            {
                Open(ref reader, ref offsets, "data_offsets");
                offsets.Numbers = Integers(ref reader);
                Close(ref reader, ref offsets);
            }
            else
            {
                // other fields are ignored, as the reference reader does
                reader.Read();
                reader.Skip();
            }
        }

        void Open(ref Utf8JsonReader r, ref Field slot, string field)
        {
            if (slot.Present) throw Bad($"field \"{field}\" appears twice");
            r.Read();
            slot.Present = true;
            slot.Kind = r.TokenType;
            slot.Start = (int)r.TokenStartIndex;
        }

        static void Close(ref Utf8JsonReader r, ref Field slot)
        {
            r.Skip(); // past a container's end, if the value was not read to it
            slot.End = (int)r.BytesConsumed;
        }

        string Raw(Field f) => Clip(Encoding.UTF8.GetString(json, f.Start, f.End - f.Start));

        if (!dtype.Present) throw Bad("missing \"dtype\"");
        if (dtype.Kind != JsonTokenType.String) throw Bad($"\"dtype\" is a JSON {Kind(dtype.Kind)}, not a string");
        if (!SafeDTypes.TryParse(dtype.Text!, out var type))
            throw Bad($"unknown dtype '{dtype.Text}' (known: {string.Join(", ", Enum.GetNames<SafeDType>())})");

        if (!shape.Present) throw Bad("missing \"shape\"");
        var dims = shape.Numbers ?? throw Bad($"\"shape\" must be an array of non-negative integers, found {Raw(shape)}");

        if (!offsets.Present) throw Bad("missing \"data_offsets\"");
        if (offsets.Numbers is not [var begin, var end])
            throw Bad($"\"data_offsets\" must be [begin, end] with non-negative integers, found {Raw(offsets)}");
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

    /// <summary>
    /// The array's elements when all are non-negative 64-bit integers, else null. Leaves the
    /// reader on the array's end (or on the value, when it is not an array).
    /// </summary>
    static long[]? Integers(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartArray) return null;
        var values = new List<long>(4);
        bool valid = true;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var v) && v >= 0) values.Add(v);
            else
            {
                valid = false;
                reader.Skip();
            }
        }
        return valid ? values.ToArray() : null;
    }

    static string Kind(JsonTokenType t) => t switch
    {
        JsonTokenType.StartObject => "object",
        JsonTokenType.StartArray => "array",
        JsonTokenType.True or JsonTokenType.False => "boolean",
        var k => k.ToString().ToLowerInvariant(),
    };

    static string Dims(long[] dims) => "[" + string.Join(", ", dims) + "]";

    static string Clip(string raw) => raw.Length <= 60 ? raw : raw[..60] + "…";
}
