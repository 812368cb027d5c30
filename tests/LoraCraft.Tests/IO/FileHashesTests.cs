using System.Text.Json;
using LoraCraft.IO;
using Xunit;

namespace LoraCraft.Tests.IO;

public class FileHashesTests
{
    static string[] Files(TempDir dir, int count) => Enumerable.Range(0, count).Select(i =>
    {
        var path = dir.File($"f{i}.bin");
        File.WriteAllBytes(path, [(byte)i, 1, 2, 3]);
        return path;
    }).ToArray();

    static int Entries(string cache) => JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllBytes(cache))!.Count;

    [SkippableFact]
    public void WithoutABatchEachNewHashIsSavedAtOnce()
    {
        using var dir = new TempDir();
        var cache = dir.File("hashes.json");
        var hashes = new FileHashes(cache);
        var files = Files(dir, 2);
        hashes.Sha256(files[0]);
        Assert.Equal(1, Entries(cache));
        hashes.Sha256(files[1]);
        Assert.Equal(2, Entries(cache));
    }

    [SkippableFact]
    public void ABatchWritesTheCacheOnceWhenItsLastScopeEnds()
    {
        using var dir = new TempDir();
        var cache = dir.File("hashes.json");
        var hashes = new FileHashes(cache);
        var files = Files(dir, 3);
        using (hashes.Batch())
        {
            hashes.Sha256(files[0]);
            using (hashes.Batch()) hashes.Sha256(files[1]);
            Assert.False(File.Exists(cache)); // the inner scope ending does not write
            hashes.Sha256(files[2]);
            Assert.False(File.Exists(cache));
        }
        Assert.Equal(3, Entries(cache));
        // a fresh instance reads them back: nothing is recomputed, so nothing is written
        File.SetLastWriteTimeUtc(cache, new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        var again = new FileHashes(cache);
        using (again.Batch()) Assert.Equal(hashes.Sha256(files[1]), again.Sha256(files[1]));
        Assert.Equal(new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc), File.GetLastWriteTimeUtc(cache));
    }

    [SkippableFact]
    public void ParallelHashingInABatchKeepsEveryHash()
    {
        using var dir = new TempDir();
        var cache = dir.File("hashes.json");
        var hashes = new FileHashes(cache);
        var files = Files(dir, 64);
        using (hashes.Batch()) Parallel.ForEach(files, f => hashes.Sha256(f));
        Assert.Equal(64, Entries(cache));
    }

    [SkippableFact]
    public void DisposingAScopeTwiceEndsItOnce()
    {
        using var dir = new TempDir();
        var cache = dir.File("hashes.json");
        var hashes = new FileHashes(cache);
        var files = Files(dir, 2);
        var outer = hashes.Batch();
        var inner = hashes.Batch();
        inner.Dispose();
        inner.Dispose();
        hashes.Sha256(files[0]);
        Assert.False(File.Exists(cache)); // the outer scope is still open
        outer.Dispose();
        Assert.Equal(1, Entries(cache));
    }
}
