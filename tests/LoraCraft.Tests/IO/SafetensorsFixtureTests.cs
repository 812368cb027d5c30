using LoraCraft.IO;
using LoraCraft.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.IO;

/// <summary>Every safetensors file among the reference fixtures (written by the Python safetensors package) reads and rewrites exactly.</summary>
public class SafetensorsFixtureTests(ITestOutputHelper output)
{
    static IEnumerable<string> FixtureFiles(string root) =>
        Directory.EnumerateFiles(root, "*.safetensors", SearchOption.AllDirectories).Order(StringComparer.Ordinal);

    [SkippableFact]
    public void EveryFixtureFileLoadsEveryTensor()
    {
        if (FixturePaths.Root is not { } root) { throw new SkipException("skipped: fixtures not found (set LORACRAFT_FIXTURES or add ../shared/fixtures)"); }
        TorchNative.Ensure();
        var files = FixtureFiles(root).ToList();
        Assert.Contains(files, f => f.EndsWith("expected.safetensors", StringComparison.Ordinal));
        Assert.Contains(files, f => f.Contains($"{Path.DirectorySeparatorChar}loras{Path.DirectorySeparatorChar}", StringComparison.Ordinal));
        Assert.Contains(files, f => f.Contains($"{Path.DirectorySeparatorChar}models{Path.DirectorySeparatorChar}", StringComparison.Ordinal));
        foreach (var path in files)
        {
            using var file = SafetensorsFile.Open(path);
            Assert.NotEmpty(file.Tensors);
            foreach (var info in file.Tensors)
            {
                using var tensor = file.Load(info.Name);
                Assert.Equal(info.Shape, tensor.shape);
                Assert.Equal(file.Bytes(info.Name).ToArray(), tensor.bytes.ToArray());
            }
            output.WriteLine($"{Path.GetRelativePath(root, path)}: {file.Tensors.Count} tensors");
        }
    }

    [SkippableFact]
    public void RewritingAFixtureFileReproducesItByteForByte()
    {
        if (FixturePaths.Root is not { } root) { throw new SkipException("skipped: fixtures not found (set LORACRAFT_FIXTURES or add ../shared/fixtures)"); }
        using var dir = new TempDir();
        foreach (var path in FixtureFiles(root))
        {
            var copy = dir.File("copy.safetensors");
            using (var file = SafetensorsFile.Open(path))
            {
                var raw = file.Tensors.Select(t => new RawTensor(t.Name, t.DType, t.Shape, file.Bytes(t.Name).ToArray())).ToList();
                SafetensorsWriter.WriteRaw(copy, raw, file.Metadata.Count > 0 ? file.Metadata : null);
            }
            Assert.True(File.ReadAllBytes(path).AsSpan().SequenceEqual(File.ReadAllBytes(copy)), $"{path} rewritten differs");
        }
    }
}
