using System.Buffers.Binary;
using System.Text;
using LoraCraft.IO;
using LoraCraft.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.IO;

public class SafetensorsRoundTripTests
{
    public SafetensorsRoundTripTests() => TorchNative.Ensure();

    /// <summary>One tensor per torch-backed dtype, random values, assorted ranks (a scalar and an empty one too).</summary>
    static List<KeyValuePair<string, Tensor>> TorchTensors(Generator g) =>
    [
        new("f64", randn([3, 5], float64, generator: g)),
        new("f32", randn([2, 3, 4], generator: g)),
        new("f16", randn([7], generator: g).to_type(float16)),
        new("bf16", randn([4, 2], generator: g).to_type(bfloat16)),
        new("i64", randint(-(1L << 40), 1L << 40, [6], int64, generator: g)),
        new("i32", randint(-2_000_000_000, 2_000_000_000, [5, 1], int32, generator: g)),
        new("i16", randint(-30_000, 30_000, [3, 3], int16, generator: g)),
        new("i8", randint(-128, 128, [10], int8, generator: g)),
        new("u8", randint(0, 256, [2, 2, 2], ScalarType.Byte, generator: g)),
        new("bool", randint(0, 2, [9], generator: g).to_type(ScalarType.Bool)),
        new("scalar", tensor(3.25f)),
        new("empty", zeros([0, 3], float16)),
    ];

    [SkippableFact]
    public void EveryTorchDtypeRoundTripsNamesShapesTypesAndBytes()
    {
        using var dir = new TempDir();
        var path = dir.File("all.safetensors");
        var tensors = TorchTensors(new Generator(7));
        Assert.Equal(Enum.GetValues<SafeDType>().Where(d => SafeDTypes.ToTorch(d) is not null).Order(),
            tensors.Select(t => SafeDTypes.FromTorch(t.Value.dtype)!.Value).Distinct().Order());
        SafetensorsWriter.Write(path, tensors);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(tensors.Select(t => t.Key), file.Tensors.Select(t => t.Name));
        foreach (var (name, original) in tensors)
        {
            var info = file.Info(name);
            Assert.Equal(SafeDTypes.FromTorch(original.dtype), info.DType);
            Assert.Equal(original.shape, info.Shape);
            Assert.Equal(original.NumberOfElements, info.ElementCount);
            Assert.Equal(original.bytes.ToArray(), file.Bytes(name).ToArray());
            using var loaded = file.Load(name);
            Assert.Equal(original.dtype, loaded.dtype);
            Assert.Equal(original.shape, loaded.shape);
            Assert.Equal(original.bytes.ToArray(), loaded.bytes.ToArray());
        }
    }

    [SkippableFact]
    public void Float8RawTensorsRoundTripAndLoadAsFloat32()
    {
        using var dir = new TempDir();
        var path = dir.File("f8.safetensors");
        var all = Enumerable.Range(0, 256).Select(b => (byte)b).Reverse().ToArray();
        RawTensor[] raw = [new("e4m3", SafeDType.F8_E4M3, [16, 16], all), new("e5m2", SafeDType.F8_E5M2, [2, 128], all)];
        SafetensorsWriter.WriteRaw(path, raw);

        using var file = SafetensorsFile.Open(path);
        foreach (var t in raw)
        {
            var info = file.Info(t.Name);
            Assert.Equal(t.DType, info.DType);
            Assert.Equal(t.Shape, info.Shape);
            Assert.Equal(all, file.Bytes(t.Name).ToArray());
            using var loaded = file.Load(t.Name);
            Assert.Equal(ScalarType.Float32, loaded.dtype);
            Assert.Equal(t.Shape, loaded.shape);
        }
    }

    // E4M3 (fn): bias 7, no infinities; E5M2: bias 15, IEEE-like with infinities.
    [SkippableTheory]
    [InlineData(SafeDType.F8_E4M3, 0x38, 1.0f)]
    [InlineData(SafeDType.F8_E4M3, 0xB8, -1.0f)]
    [InlineData(SafeDType.F8_E4M3, 0x7E, 448f)]
    [InlineData(SafeDType.F8_E4M3, 0x01, 0.001953125f)]
    [InlineData(SafeDType.F8_E4M3, 0x0F, 0.029296875f)]
    [InlineData(SafeDType.F8_E4M3, 0x53, 11f)]
    [InlineData(SafeDType.F8_E4M3, 0x7F, float.NaN)]
    [InlineData(SafeDType.F8_E4M3, 0x78, 256f)]
    [InlineData(SafeDType.F8_E5M2, 0x3C, 1.0f)]
    [InlineData(SafeDType.F8_E5M2, 0x7B, 57344f)]
    [InlineData(SafeDType.F8_E5M2, 0x01, 1.52587890625e-05f)]
    [InlineData(SafeDType.F8_E5M2, 0x7C, float.PositiveInfinity)]
    [InlineData(SafeDType.F8_E5M2, 0xFC, float.NegativeInfinity)]
    [InlineData(SafeDType.F8_E5M2, 0x7D, float.NaN)]
    [InlineData(SafeDType.F8_E5M2, 0xC9, -10f)]
    public void Float8DecodesToKnownValues(SafeDType type, int bits, float expected)
    {
        using var dir = new TempDir();
        var path = dir.File("f8.safetensors");
        SafetensorsWriter.WriteRaw(path, [new RawTensor("x", type, [1], new[] { (byte)bits })]);
        using var file = SafetensorsFile.Open(path);
        using var loaded = file.Load("x");
        Assert.Equal(expected, loaded.data<float>()[0]);
        using var half = file.Load("x", ScalarType.Float16);
        Assert.Equal(ScalarType.Float16, half.dtype);
    }

    [SkippableFact]
    public void LoadConvertsToTheRequestedDtype()
    {
        using var dir = new TempDir();
        var path = dir.File("convert.safetensors");
        using var g = new Generator(11);
        using var f16 = randn([3, 4], generator: g).to_type(float16);
        SafetensorsWriter.Write(path, [new("w", f16)]);
        using var file = SafetensorsFile.Open(path);
        using var loaded = file.Load("w", ScalarType.Float32);
        using var expected = f16.to_type(float32);
        Assert.Equal(ScalarType.Float32, loaded.dtype);
        Assert.Equal(expected.data<float>().ToArray(), loaded.data<float>().ToArray());
        using var same = file.Load("w", ScalarType.Float16);
        Assert.Equal(f16.bytes.ToArray(), same.bytes.ToArray());
    }

    [SkippableFact]
    public void MetadataRoundTripsInOrderWithAnyCharacters()
    {
        using var dir = new TempDir();
        var path = dir.File("meta.safetensors");
        var metadata = new Dictionary<string, string>
        {
            ["ss_output_name"] = "my \"style\" \\ lora",
            ["ss_tag_frequency"] = "{\"10_cat\": {\"cat\": 10,\n \"chat\": 4}}\t\u0001",
            ["modelspec.title"] = "Café ünïcödé 猫 🐈",
            ["long"] = new string('x', 10_000),
            ["empty"] = "",
        };
        using var w = ones(2);
        SafetensorsWriter.Write(path, [new("w", w)], metadata);
        var header = SafetensorsHeader.Read(path);
        Assert.Equal(metadata.ToList(), header.Metadata.ToList());
    }

    [SkippableFact]
    public void HeaderIsLaidOutLikeTheReferenceWriter()
    {
        using var dir = new TempDir();
        var path = dir.File("layout.safetensors");
        using var b = arange(6, dtype: float32).reshape(2, 3);
        using var a = tensor(new short[] { 1, -2 });
        SafetensorsWriter.Write(path, [new("b", b), new("a", a)], new Dictionary<string, string> { ["format"] = "pt" });

        var bytes = File.ReadAllBytes(path);
        long length = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        Assert.Equal(0, length % 8);
        var header = Encoding.UTF8.GetString(bytes, 8, (int)length);
        Assert.Equal("{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},\"a\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[24,28]}}",
            header.TrimEnd(' '));
        Assert.Equal(8 + length + 28, bytes.Length);
        Assert.Equal(BitConverter.GetBytes(5f), bytes[(int)(8 + length + 20)..(int)(8 + length + 24)]);
    }

    [SkippableFact]
    public void NoTensorsGivesAValidEmptyFile()
    {
        using var dir = new TempDir();
        var path = dir.File("empty.safetensors");
        SafetensorsWriter.Write(path, []);
        Assert.Equal(Encoding.ASCII.GetBytes("\x08\0\0\0\0\0\0\0{}      "), File.ReadAllBytes(path));
        using var file = SafetensorsFile.Open(path);
        Assert.Empty(file.Tensors);
        Assert.Empty(file.Metadata);
    }

    [SkippableFact]
    public void NonContiguousTensorIsWrittenInLogicalOrder()
    {
        using var dir = new TempDir();
        var path = dir.File("transposed.safetensors");
        using var m = arange(12, dtype: int32).reshape(3, 4);
        using var t = m.t();
        Assert.False(t.is_contiguous());
        SafetensorsWriter.Write(path, [new("t", t)]);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal([4L, 3L], file.Info("t").Shape);
        using var loaded = file.Load("t");
        Assert.Equal(new[] { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }, loaded.data<int>().ToArray());
        Assert.False(t.IsInvalid);
    }

    [SkippableFact]
    public void AskingForAnAbsentTensorNamesIt()
    {
        using var dir = new TempDir();
        var path = dir.File("one.safetensors");
        using var w = ones(2);
        SafetensorsWriter.Write(path, [new("w", w)]);
        using var file = SafetensorsFile.Open(path);
        Assert.True(file.Contains("w"));
        Assert.False(file.Contains("v"));
        Assert.False(file.Header.TryGet("v", out _));
        var e = Assert.Throws<SafetensorsFormatException>(() => file.Load("v"));
        Assert.Equal("v", e.Tensor);
        Assert.Equal($"{path}: tensor 'v': no such tensor in this file", e.Message);
    }

    [SkippableFact]
    public void DisposedFileRefusesReads()
    {
        using var dir = new TempDir();
        var path = dir.File("closed.safetensors");
        using var w = ones(2);
        SafetensorsWriter.Write(path, [new("w", w)]);
        var file = SafetensorsFile.Open(path);
        file.Dispose();
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.Bytes("w").Length);
        Assert.Throws<ObjectDisposedException>(() => file.Load("w"));
    }

    [SkippableFact]
    public void ChunkedVisitCoversTheTensorInOrder()
    {
        using var x = arange(1000, dtype: int32);
        var whole = x.bytes.ToArray();
        var seen = new byte[whole.Length];
        long next = 0;
        TensorBytes.Visit(x, (chunk, offset) =>
        {
            Assert.Equal(next, offset);
            Assert.True(chunk.Length <= 28);
            chunk.CopyTo(seen.AsSpan((int)offset));
            next = offset + chunk.Length;
        }, chunkBytes: 30);
        Assert.Equal(whole.Length, next);
        Assert.Equal(whole, seen);
    }

    [SkippableFact]
    public void OpeningALargeFileMapsItWithoutReadingIt()
    {
        using var dir = new TempDir();
        var path = dir.File("large.safetensors");
        const long big = 200L << 20;
        var json = Encoding.UTF8.GetBytes($"{{\"big\":{{\"dtype\":\"F32\",\"shape\":[{big / 4}],\"data_offsets\":[0,{big}]}},\"tail\":{{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[{big},{big + 8}]}}}}");
        using (var stream = File.Create(path))
        {
            stream.Write(BitConverter.GetBytes((long)json.Length));
            stream.Write(json);
            stream.SetLength(8 + json.Length + big); // sparse: no data is written
            stream.Seek(0, SeekOrigin.End);
            stream.Write(BitConverter.GetBytes(7));
            stream.Write(BitConverter.GetBytes(-9));
        }
        var watch = System.Diagnostics.Stopwatch.StartNew();
        using var file = SafetensorsFile.Open(path);
        using var tail = file.Load("tail");
        watch.Stop();
        Assert.Equal(new[] { 7, -9 }, tail.data<int>().ToArray());
        Assert.Equal(big, file.Info("big").ByteLength);
        Assert.True(watch.ElapsedMilliseconds < 1000, $"open + load of a small tensor took {watch.ElapsedMilliseconds} ms");
    }
}
