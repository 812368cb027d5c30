using System.Buffers.Binary;
using System.Text;
using TorchSharp;

namespace LoraCraft.IO;

/// <summary>A tensor given as stored bytes, for types torch lacks (float8) or data that is already raw.</summary>
public sealed record RawTensor(string Name, SafeDType DType, long[] Shape, ReadOnlyMemory<byte> Data);

/// <summary>
/// A tensor declared by its header entry and made only when its bytes are due, so a file larger
/// than memory can be written: <see cref="Produce"/> is called once, in order, and its result is
/// disposed as soon as it is written.
/// </summary>
public sealed record LazyTensor(string Name, SafeDType DType, long[] Shape, Func<torch.Tensor> Produce);

/// <summary>
/// Writes safetensors files the way the reference writer lays them out (header JSON with
/// __metadata__ first, compact, padded with spaces to a multiple of 8; data contiguous), keeping
/// the tensors in the order given. The file appears only when complete: data goes to a temporary
/// file in the same folder, which then replaces the target.
/// </summary>
public static class SafetensorsWriter
{
    sealed record Entry(string Name, SafeDType DType, long[] Shape, long ByteLength, Action<Stream> WriteData);

    public static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var entries = tensors.Select(pair =>
        {
            var tensor = pair.Value;
            var type = SafeDTypes.FromTorch(tensor.dtype)
                ?? throw new ArgumentException($"tensor '{pair.Key}': {tensor.dtype} has no safetensors dtype", nameof(tensors));
            return new Entry(pair.Key, type, tensor.shape, tensor.NumberOfElements * SafeDTypes.Size(type), stream => WriteTensor(stream, tensor));
        }).ToList();
        WriteEntries(path, entries, metadata);
    }

    public static void WriteRaw(string path, IEnumerable<RawTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var entries = tensors.Select(t =>
        {
            if (t.Shape.Any(d => d < 0)) throw new ArgumentException($"tensor '{t.Name}': negative dimension in its shape", nameof(tensors));
            long needed = t.Shape.Aggregate((long)SafeDTypes.Size(t.DType), (n, d) => checked(n * d));
            if (t.Data.Length != needed)
                throw new ArgumentException($"tensor '{t.Name}': {t.Data.Length} bytes given but {t.DType} [{string.Join(", ", t.Shape)}] needs {needed}", nameof(tensors));
            return new Entry(t.Name, t.DType, t.Shape, needed, stream => stream.Write(t.Data.Span));
        }).ToList();
        WriteEntries(path, entries, metadata);
    }

    /// <summary>
    /// Like <see cref="Write"/>, but each tensor is produced while the file is written (the header,
    /// which comes first, needs only the declared shapes); at most one produced tensor is alive.
    /// </summary>
    public static void WriteLazy(string path, IEnumerable<LazyTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var entries = tensors.Select(t =>
        {
            if (t.Shape.Any(d => d < 0)) throw new ArgumentException($"tensor '{t.Name}': negative dimension in its shape", nameof(tensors));
            long bytes = t.Shape.Aggregate((long)SafeDTypes.Size(t.DType), (n, d) => checked(n * d));
            return new Entry(t.Name, t.DType, t.Shape, bytes, stream =>
            {
                using var tensor = t.Produce();
                if (SafeDTypes.FromTorch(tensor.dtype) != t.DType || !tensor.shape.SequenceEqual(t.Shape))
                    throw new InvalidOperationException(
                        $"tensor '{t.Name}': produced {tensor.dtype} [{string.Join(", ", tensor.shape)}] but declared {t.DType} [{string.Join(", ", t.Shape)}]");
                WriteTensor(stream, tensor);
            });
        }).ToList();
        WriteEntries(path, entries, metadata);
    }

    static void WriteTensor(Stream stream, torch.Tensor tensor)
    {
        // Frees the CPU copy and the contiguous view made here, never the caller's tensor.
        using var scope = torch.NewDisposeScope();
        var cpu = tensor.device_type == DeviceType.CPU ? tensor : tensor.cpu();
        TensorBytes.Visit(cpu.contiguous(), (chunk, _) => stream.Write(chunk));
    }

    static void WriteEntries(string path, List<Entry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>();
        foreach (var e in entries)
        {
            if (e.Name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor", "tensors");
            if (!names.Add(e.Name)) throw new ArgumentException($"tensor '{e.Name}' is given twice", "tensors");
        }
        var header = Header(entries, metadata);

        var temporary = $"{path}.tmp-{Guid.NewGuid():N}";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
                stream.Write(length);
                stream.Write(header);
                foreach (var e in entries) e.WriteData(stream);
                // On disk before the rename, so a crash cannot leave a complete-looking empty file.
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(temporary); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            throw;
        }
    }

    static byte[] Header(List<Entry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        var json = new StringBuilder("{");
        bool first = true;
        void Key(string key)
        {
            if (!first) json.Append(',');
            first = false;
            AppendString(json, key);
            json.Append(':');
        }

        // An empty map is left out: readers cannot tell it from none.
        if (metadata is { Count: > 0 })
        {
            Key("__metadata__");
            json.Append('{');
            bool firstEntry = true;
            foreach (var (key, value) in metadata)
            {
                if (!firstEntry) json.Append(',');
                firstEntry = false;
                AppendString(json, key);
                json.Append(':');
                AppendString(json, value);
            }
            json.Append('}');
        }
        long offset = 0;
        foreach (var e in entries)
        {
            Key(e.Name);
            json.Append("{\"dtype\":");
            AppendString(json, SafeDTypes.Name(e.DType));
            json.Append(",\"shape\":[").AppendJoin(',', e.Shape).Append("],\"data_offsets\":[");
            json.Append(offset).Append(',').Append(offset + e.ByteLength).Append("]}");
            offset += e.ByteLength;
        }
        json.Append('}');
        var text = json.ToString();
        int padding = (8 - Encoding.UTF8.GetByteCount(text) % 8) % 8;
        return Encoding.UTF8.GetBytes(text + new string(' ', padding));
    }

    /// <summary>A JSON string escaped as serde_json does: quote, backslash and control characters only.</summary>
    static void AppendString(StringBuilder json, string s)
    {
        json.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': json.Append("\\\""); break;
                case '\\': json.Append("\\\\"); break;
                case '\n': json.Append("\\n"); break;
                case '\r': json.Append("\\r"); break;
                case '\t': json.Append("\\t"); break;
                case '\b': json.Append("\\b"); break;
                case '\f': json.Append("\\f"); break;
                case < ' ': json.Append($"\\u{(int)c:x4}"); break;
                default: json.Append(c); break;
            }
        }
        json.Append('"');
    }
}
