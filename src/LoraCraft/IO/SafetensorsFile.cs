using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using TorchSharp;

namespace LoraCraft.IO;

/// <summary>
/// A safetensors file opened for reading: the header is parsed and validated up front; Load and
/// ReadInto read tensors with read(), Bytes gives views of a read-only memory map (both kept for
/// the object's lifetime).
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    readonly MemoryMappedFile _map;
    readonly MemoryMappedViewAccessor _view;
    readonly Microsoft.Win32.SafeHandles.SafeFileHandle _handle;
    byte* _data;

    public SafetensorsHeader Header { get; }
    public string Path => Header.Path;
    public IReadOnlyDictionary<string, string> Metadata => Header.Metadata;
    public IReadOnlyList<SafeTensorInfo> Tensors => Header.Tensors;

    SafetensorsFile(SafetensorsHeader header, MemoryMappedFile map, MemoryMappedViewAccessor view)
    {
        Header = header;
        _map = map;
        _view = view;
        byte* start = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
        _data = start + view.PointerOffset + header.DataOffset;
        _handle = File.OpenHandle(header.Path, FileMode.Open, FileAccess.Read, FileShare.Read);
    }

    public static SafetensorsFile Open(string path)
    {
        var stream = SafetensorsHeader.OpenRead(path);
        MemoryMappedFile? map = null;
        try
        {
            // Header and map come from the same open file, so both describe the same bytes.
            var header = SafetensorsHeader.Read(stream, path);
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            return new SafetensorsFile(header, map, map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read));
        }
        catch
        {
            map?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => Header.Contains(name);

    public SafeTensorInfo Info(string name) => Header[name];

    /// <summary>The stored bytes of a tensor: a view into the map, valid until Dispose.</summary>
    public ReadOnlySpan<byte> Bytes(string name)
    {
        var info = Info(name);
        if (info.ByteLength > int.MaxValue)
            throw new NotSupportedException($"{Path}: tensor '{name}' is {info.ByteLength} bytes, over a span's 2 GiB; use Load");
        return new ReadOnlySpan<byte>(Start(info), (int)info.ByteLength);
    }

    /// <summary>
    /// A new CPU tensor holding a copy of the stored values, shaped as stored. Float8 values are
    /// decoded to float32, as TorchSharp has no float8 type; <paramref name="dtype"/> converts after that.
    /// </summary>
    public torch.Tensor Load(string name, torch.ScalarType? dtype = null)
    {
        var info = Info(name);
        byte* source = Start(info);
        torch.Tensor tensor;
        if (SafeDTypes.ToTorch(info.DType) is { } stored)
        {
            // read() rather than the map: the kernel copies from the page cache without a page
            // fault per 4 KiB (several times faster for weights read again, as a LoRA switch does)
            tensor = torch.empty(info.Shape, stored);
            long at = Header.DataOffset + info.Begin;
            TensorBytes.Visit(tensor, (chunk, offset) => ReadExactly(chunk, at + offset));
        }
        else
        {
            tensor = torch.empty(info.Shape, torch.ScalarType.Float32);
            TensorBytes.Visit(tensor, (chunk, offset) =>
                Float8.Decode(info.DType, new ReadOnlySpan<byte>(source + offset / sizeof(float), chunk.Length / sizeof(float)), MemoryMarshal.Cast<byte, float>(chunk)));
            ReleasePages(source, info.ByteLength);
        }
        if (dtype is not { } wanted || wanted == tensor.dtype) return tensor;
        using (tensor) return tensor.to_type(wanted);
    }

    /// <summary>Stored bytes of a tensor, from byte <paramref name="offset"/> of it, read into <paramref name="into"/> (filled exactly).</summary>
    public void ReadInto(string name, Span<byte> into, long offset = 0)
    {
        var info = Info(name);
        if (offset < 0 || offset + into.Length > info.ByteLength)
            throw new ArgumentException($"'{name}' has {info.ByteLength} bytes; {into.Length} from {offset} asked");
        ObjectDisposedException.ThrowIf(_data == null, this);
        ReadExactly(into, Header.DataOffset + info.Begin + offset);
    }

    void ReadExactly(Span<byte> into, long offset)
    {
        while (into.Length > 0)
        {
            int n = RandomAccess.Read(_handle, into, offset);
            if (n <= 0) throw new IOException($"{Path}: the file ended inside a tensor (truncated?)");
            into = into[n..];
            offset += n;
        }
    }

    /// <summary>
    /// Drops the mapped pages just copied from this process's resident set. The copy is what we
    /// keep; without this a model's whole file would stay counted in RSS until Dispose (the
    /// pages remain in the page cache, so reading them again costs no disk access).
    /// </summary>
    static void ReleasePages(byte* start, long length)
    {
        if (!OperatingSystem.IsLinux() || length < PageSize) return;
        long first = ((long)start + PageSize - 1) & ~(PageSize - 1); // only whole pages inside the tensor
        long end = ((long)start + length) & ~(PageSize - 1);
        if (end > first) _ = madvise((nint)first, (nuint)(end - first), MadvDontNeed);
    }

    const long PageSize = 4096;
    const int MadvDontNeed = 4;

    [DllImport("libc", SetLastError = true)]
    static extern int madvise(nint address, nuint length, int advice);

    byte* Start(SafeTensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_data == null, this);
        return _data + info.Begin;
    }

    public void Dispose()
    {
        if (_data == null) return;
        _data = null;
        _handle.Dispose();
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
