using System.Buffers.Binary;
using System.Text;
using LoraCraft.IO;
using Xunit;

namespace LoraCraft.Tests.IO;

/// <summary>Each case is a broken file; reading it must fail naming the file, the tensor at fault (if any) and the problem.</summary>
public class SafetensorsMalformedTests
{
    /// <summary>A file: 8-byte length (the JSON's unless <paramref name="declared"/>), JSON header, then <paramref name="data"/> bytes 1, 2, 3, ...</summary>
    static byte[] File(string json, int data = 0, ulong? declared = null)
    {
        var header = Encoding.UTF8.GetBytes(json);
        var bytes = new byte[8 + header.Length + data];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declared ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        for (int i = 0; i < data; i++) bytes[8 + header.Length + i] = (byte)(i + 1);
        return bytes;
    }

    static byte[] Patch(byte[] bytes, int at, byte value)
    {
        bytes[at] = value;
        return bytes;
    }

    static string Entry(string name, string dtype, string shape, string offsets) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":{offsets}}}";

    const string TwoTensors = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";

    sealed record Case(byte[] Bytes, string? Tensor, string Problem);

    static readonly Dictionary<string, Case> Cases = new()
    {
        ["empty file"] = new([], null, "empty file"),
        ["shorter than the length prefix"] = new([16, 0, 0, 0, 0], null, "too short for the 8-byte header length"),
        ["header length past the end of the file"] = new(File(TwoTensors, 16, declared: 4096), null, "header length 4096 runs past the end of the file"),
        ["header cut short"] = new(File(TwoTensors, 16)[..40], null, "runs past the end of the file (40 bytes"),
        ["huge header length"] = new(File(TwoTensors, 16, declared: 1UL << 60), null, "over the 100000000-byte limit"),
        ["header length too small"] = new(File("{", 0), null, "header length 1 is too small"),
        ["invalid JSON"] = new(File("{\"a\":{\"dtype\":\"F32\",", 0), null, "header is not valid JSON"),
        ["JSON not an object"] = new(File("[1, 2, 3]"), null, "header is a JSON array, not an object"),
        ["invalid JSON after a non-object"] = new(File("[1, 2, }"), null, "header is not valid JSON"),
        ["text after the object"] = new(File(TwoTensors + " x", 16), null, "header is not valid JSON"),
        ["invalid JSON in an ignored field"] = new(File("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"note\":{\"a\":]}}}", 8), null, "header is not valid JSON"),
        ["nested array in shape"] = new(File("{" + Entry("w", "F32", "[[2]]", "[0,8]") + "}", 8), "w", "non-negative integers, found [[2]]"),
        ["object as offsets"] = new(File("{" + Entry("w", "F32", "[2]", "{\"begin\":0}") + "}", 8), "w", "must be [begin, end] with non-negative integers, found {\"begin\":0}"),
        ["header not UTF-8"] = new(Patch(File("{\"aX\":1}"), at: 11, 0xff), null, "header is not valid UTF-8"),
        ["unknown dtype"] = new(File("{" + Entry("w", "F17", "[2]", "[0,8]") + "}", 8), "w", "unknown dtype 'F17'"),
        ["dtype in lower case"] = new(File("{" + Entry("w", "f32", "[2]", "[0,8]") + "}", 8), "w", "unknown dtype 'f32'"),
        ["dtype not a string"] = new(File("{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "w", "\"dtype\" is a JSON number"),
        ["missing dtype"] = new(File("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "w", "missing \"dtype\""),
        ["missing data_offsets"] = new(File("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8), "w", "missing \"data_offsets\""),
        ["field given twice"] = new(File("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "w", "field \"dtype\" appears twice"),
        ["entry not an object"] = new(File("{\"w\":[0,8]}", 8), "w", "entry is a JSON array"),
        ["size not matching shape"] = new(File("{" + Entry("w", "F32", "[2,3]", "[0,20]") + "}", 20), "w", "holds 20 bytes (data_offsets [0, 20]) but F32 [2, 3] needs 24"),
        ["negative dimension"] = new(File("{" + Entry("w", "F32", "[-1,2]", "[0,8]") + "}", 8), "w", "non-negative integers, found [-1,2]"),
        ["fractional dimension"] = new(File("{" + Entry("w", "F32", "[1.5]", "[0,8]") + "}", 8), "w", "non-negative integers, found [1.5]"),
        ["shape not an array"] = new(File("{" + Entry("w", "F32", "2", "[0,8]") + "}", 8), "w", "\"shape\" must be an array"),
        ["shape overflowing"] = new(File("{" + Entry("w", "F32", "[4611686018427387904,4]", "[0,8]") + "}", 8), "w", "its byte size overflows"),
        ["three offsets"] = new(File("{" + Entry("w", "F32", "[2]", "[0,8,16]") + "}", 8), "w", "must be [begin, end]"),
        ["negative offset"] = new(File("{" + Entry("w", "F32", "[2]", "[-8,0]") + "}", 8), "w", "must be [begin, end]"),
        ["begin after end"] = new(File("{" + Entry("w", "F32", "[2]", "[8,0]") + "}", 8), "w", "data_offsets [8, 0] end before they begin"),
        ["offsets past the data"] = new(File("{" + Entry("w", "F32", "[4]", "[0,16]") + "}", 8), "w", "run past the end of the data section (8 bytes"),
        ["truncated data"] = new(File(TwoTensors, 16)[..^4], "b", "data_offsets [8, 16] run past the end of the data section (12 bytes"),
        ["overlapping tensors"] = new(File("{" + Entry("a", "F32", "[4]", "[0,16]") + "," + Entry("b", "F32", "[4]", "[8,24]") + "}", 24), "b", "overlap tensor 'a' [0, 16]"),
        ["gap between tensors"] = new(File("{" + Entry("a", "F32", "[2]", "[0,8]") + "," + Entry("b", "F32", "[2]", "[16,24]") + "}", 24), "b", "data bytes 8..16 before it belong to no tensor"),
        ["trailing bytes"] = new(File("{" + Entry("a", "F32", "[2]", "[0,8]") + "}", 12), null, "4 trailing bytes belong to no tensor"),
        ["duplicate tensor name"] = new(File("{" + Entry("a", "F32", "[2]", "[0,8]") + "," + Entry("a", "F32", "[2]", "[8,16]") + "}", 16), "a", "appears twice in the header"),
        ["duplicate __metadata__"] = new(File("{\"__metadata__\":{},\"__metadata__\":{}}"), null, "__metadata__ appears twice"),
        ["metadata value not a string"] = new(File("{\"__metadata__\":{\"steps\":1000}," + Entry("a", "F32", "[2]", "[0,8]") + "}", 8), null, "__metadata__ key 'steps' has a number value"),
        ["metadata not an object"] = new(File("{\"__metadata__\":[\"x\"]}"), null, "__metadata__ is a JSON array"),
        ["duplicate metadata key"] = new(File("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"), null, "__metadata__ key 'k' appears twice"),
    };

    public static TheoryData<string> CaseNames() => new(Cases.Keys);

    [SkippableTheory]
    [MemberData(nameof(CaseNames))]
    public void MalformedFileIsRejectedWithFileTensorAndProblem(string name)
    {
        var c = Cases[name];
        using var dir = new TempDir();
        var path = dir.File("broken.safetensors");
        System.IO.File.WriteAllBytes(path, c.Bytes);

        foreach (var read in new Action[] { () => SafetensorsHeader.Read(path), () => SafetensorsFile.Open(path).Dispose() })
        {
            var e = Assert.Throws<SafetensorsFormatException>(read);
            Assert.Equal(path, e.Path);
            Assert.Equal(c.Tensor, e.Tensor);
            Assert.StartsWith(path + ": ", e.Message);
            if (c.Tensor is not null) Assert.StartsWith($"{path}: tensor '{c.Tensor}': ", e.Message);
            Assert.Contains(c.Problem, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    [SkippableFact]
    public void ControlCharactersInANameDoNotBreakTheMessageLine()
    {
        using var dir = new TempDir();
        var path = dir.File("names.safetensors");
        System.IO.File.WriteAllBytes(path, File("{" + Entry("bad\\nname", "F99", "[2]", "[0,8]") + "}", 8));
        var e = Assert.Throws<SafetensorsFormatException>(() => SafetensorsHeader.Read(path));
        Assert.Equal("bad\nname", e.Tensor);
        Assert.Contains("tensor 'bad\\nname'", e.Message);
    }

    [SkippableFact]
    public void MissingFileIsFileNotFound()
    {
        using var dir = new TempDir();
        var path = dir.File("absent.safetensors");
        Assert.Equal(path, Assert.Throws<FileNotFoundException>(() => SafetensorsHeader.Read(path)).FileName);
        Assert.Throws<FileNotFoundException>(() => SafetensorsFile.Open(path));
    }

    [SkippableFact]
    public void FolderIsRejectedByName()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(dir.Path));
        Assert.Equal($"{dir.Path}: is a folder, not a safetensors file", e.Message);
    }

    [SkippableFact]
    public void NullMetadataMeansNone()
    {
        using var dir = new TempDir();
        var path = dir.File("null-metadata.safetensors");
        System.IO.File.WriteAllBytes(path, File("{\"__metadata__\":null," + Entry("a", "I8", "[3]", "[0,3]") + "}", 3));
        var header = SafetensorsHeader.Read(path);
        Assert.Empty(header.Metadata);
        Assert.Equal("a", Assert.Single(header.Tensors).Name);
    }

    [SkippableFact]
    public void UnknownFieldsAndTensorsOutOfOffsetOrderAreAccepted()
    {
        using var dir = new TempDir();
        var path = dir.File("unordered.safetensors");
        var json = "{\"b\":{\"dtype\":\"U8\",\"note\":{\"x\":[1,{\"y\":2}]},\"shape\":[2],\"data_offsets\":[3,5],\"more\":[1]}," + Entry("z", "U8", "[0]", "[0,0]") + "," + Entry("a", "U8", "[3]", "[0,3]") + "}";
        System.IO.File.WriteAllBytes(path, File(json, 5));
        var header = SafetensorsHeader.Read(path);
        Assert.Equal(["z", "a", "b"], header.Tensors.Select(t => t.Name));
        Assert.Equal(8 + Encoding.UTF8.GetByteCount(json), header.DataOffset);
        Assert.Equal(header.DataOffset + 5, header.FileLength);
    }
}
