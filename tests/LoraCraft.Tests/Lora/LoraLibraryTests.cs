using LoraCraft.Lora;
using Xunit;

namespace LoraCraft.Tests.Lora;

public class LoraLibraryTests
{
    static TempDir Library(params string[] files)
    {
        var dir = new TempDir();
        foreach (var f in files)
        {
            var path = dir.File(f);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, "");
        }
        return dir;
    }

    [SkippableFact]
    public void ExactNameBeatsACaseInsensitiveOne()
    {
        using var dir = Library("Style.safetensors", "style.safetensors", "other.safetensors");
        var library = new LoraLibrary(dir.Path);
        Assert.Equal(dir.File("style.safetensors"), library.Resolve("style"));
        Assert.Equal(dir.File("Style.safetensors"), library.Resolve("Style"));
        Assert.Equal(dir.File("other.safetensors"), library.Resolve("OTHER"));
    }

    [SkippableFact]
    public void SubfoldersAreSearchedAndOnlySafetensorsCount()
    {
        using var dir = Library(Path.Combine("chars", "deep", "hero.safetensors"), "notes.txt", "legacy.pt");
        var library = new LoraLibrary(dir.Path);
        Assert.Equal(dir.File(Path.Combine("chars", "deep", "hero.safetensors")), library.Resolve("hero"));
        Assert.Single(library.Files);
        Assert.Throws<UserErrorException>(() => library.Resolve("legacy"));
    }

    [SkippableFact]
    public void AnUnknownNameIsReportedWithTheClosestOnes()
    {
        using var dir = Library("watercolor.safetensors", "pixel_art.safetensors", "zz_unrelated_thing.safetensors");
        var e = Assert.Throws<UserErrorException>(() => new LoraLibrary(dir.Path).Resolve("watercolour"));
        Assert.Contains("'watercolour' not found", e.Message);
        Assert.Contains("closest: watercolor, ", e.Message);
    }

    [SkippableFact]
    public void AMissingFolderOrAnEmptyOneSaysSo()
    {
        using var dir = Library();
        Assert.Contains("has no .safetensors files", Assert.Throws<UserErrorException>(() => new LoraLibrary(dir.Path).Resolve("x")).Message);
        Assert.Contains("does not exist", Assert.Throws<UserErrorException>(() => new LoraLibrary(dir.File("nope")).Resolve("x")).Message);
    }

    [SkippableTheory]
    [InlineData("../secret")]
    [InlineData("..")]
    [InlineData("sub/style")]
    [InlineData(@"sub\style")]
    [InlineData("/etc/passwd")]
    public void NamesThatCouldLeaveTheFolderAreRefused(string name)
    {
        using var dir = Library(Path.Combine("sub", "style.safetensors"));
        var e = Assert.Throws<UserErrorException>(() => new LoraLibrary(dir.Path).Resolve(name));
        Assert.Contains("path separators or '..'", e.Message);
    }

    [SkippableFact]
    public void AnExistingFileIsUsedAsIsAnythingElseIsAName()
    {
        using var dir = Library("style.safetensors");
        var library = new LoraLibrary(dir.File("elsewhere"));
        Assert.Equal(dir.File("style.safetensors"), library.ResolveFileOrName(dir.File("style.safetensors")));
        Assert.Throws<UserErrorException>(() => library.ResolveFileOrName("style"));
    }

    [Fact]
    public void APickleLoraIsRefusedByName()
    {
        using var dir = Library("styles/old_style.pt", "new_style.safetensors");
        var e = Assert.Throws<UserErrorException>(() => new LoraLibrary(dir.Path).Resolve("old_style"));
        Assert.Contains("pickle file", e.Message);
        Assert.Contains("convert it to .safetensors", e.Message);
    }
}
