using LoraCraft.IO;
using LoraCraft.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.IO;

/// <summary>The writer either produces the whole file or leaves the target (and its folder) as it was.</summary>
public class SafetensorsWriterTests
{
    public SafetensorsWriterTests() => TorchNative.Ensure();

    [SkippableFact]
    public void WritingIntoAMissingFolderFailsAndCreatesNothing()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "missing", "out.safetensors");
        using var w = ones(3);
        Assert.Throws<DirectoryNotFoundException>(() => SafetensorsWriter.Write(path, [new("w", w)]));
        Assert.Empty(dir.Entries());
    }

    [SkippableFact]
    public void OverwriteReplacesTheFileWhileOpenReadersKeepTheOldData()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        using var first = full(2, 1.5f);
        using var second = full(4, -2f);
        SafetensorsWriter.Write(path, [new("w", first)]);
        using var old = SafetensorsFile.Open(path);

        SafetensorsWriter.Write(path, [new("w", second)], new Dictionary<string, string> { ["v"] = "2" });

        Assert.Equal(["model.safetensors"], dir.Entries());
        using var now = SafetensorsFile.Open(path);
        Assert.Equal("2", now.Metadata["v"]);
        using var loaded = now.Load("w");
        Assert.Equal(new[] { -2f, -2f, -2f, -2f }, loaded.data<float>().ToArray());
        using var before = old.Load("w");
        Assert.Equal(new[] { 1.5f, 1.5f }, before.data<float>().ToArray());
    }

    [SkippableFact]
    public void RejectedTensorsLeaveTheExistingFileUntouched()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        using var w = ones(2);
        SafetensorsWriter.Write(path, [new("w", w)]);
        var original = File.ReadAllBytes(path);

        using var complex = zeros(2, ScalarType.ComplexFloat32);
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("w", w), new("c", complex)]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("w", w), new("w", w)]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("__metadata__", w)]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.WriteRaw(path, [new RawTensor("r", SafeDType.F16, [3], new byte[5])]));

        Assert.Equal(original, File.ReadAllBytes(path));
        Assert.Equal(["model.safetensors"], dir.Entries());
    }

    [SkippableFact]
    public void AFailureAfterStreamingRemovesTheTemporaryFile()
    {
        using var dir = new TempDir();
        var target = dir.File("taken");
        Directory.CreateDirectory(target); // the final rename onto a folder fails
        using var w = ones(2);
        Assert.ThrowsAny<IOException>(() => SafetensorsWriter.Write(target, [new("w", w)]));
        Assert.Equal(["taken"], dir.Entries());
        Assert.Empty(Directory.GetFileSystemEntries(target));
    }

    [SkippableFact]
    public void LazyTensorsAreMadeInOrderAndDisposedBeforeTheNextAndGiveTheSameFile()
    {
        using var dir = new TempDir();
        using var a = arange(6, float32).reshape(2, 3);
        using var b = full(4, -1.5f, float16);
        SafetensorsWriter.Write(dir.File("eager.safetensors"), [new("a", a), new("b", b)], new Dictionary<string, string> { ["k"] = "v" });

        var made = new List<Tensor>();
        Tensor Make(Tensor source)
        {
            Assert.All(made, t => Assert.True(t.IsInvalid, "an earlier tensor is still alive"));
            var t = source.clone();
            made.Add(t);
            return t;
        }
        SafetensorsWriter.WriteLazy(dir.File("lazy.safetensors"),
            [new LazyTensor("a", SafeDType.F32, [2, 3], () => Make(a)), new LazyTensor("b", SafeDType.F16, [4], () => Make(b))],
            new Dictionary<string, string> { ["k"] = "v" });

        Assert.Equal(2, made.Count);
        Assert.All(made, t => Assert.True(t.IsInvalid));
        Assert.Equal(File.ReadAllBytes(dir.File("eager.safetensors")), File.ReadAllBytes(dir.File("lazy.safetensors")));
    }

    [SkippableFact]
    public void ALazyTensorUnlikeItsDeclarationFailsAndLeavesNoFile()
    {
        using var dir = new TempDir();
        Assert.Throws<InvalidOperationException>(() => SafetensorsWriter.WriteLazy(dir.File("m.safetensors"),
            [new LazyTensor("w", SafeDType.F16, [3], () => ones(3, float32))]));
        Assert.Throws<InvalidOperationException>(() => SafetensorsWriter.WriteLazy(dir.File("m.safetensors"),
            [new LazyTensor("w", SafeDType.F16, [3], () => ones(4, float16))]));
        Assert.Empty(dir.Entries());
    }
}
