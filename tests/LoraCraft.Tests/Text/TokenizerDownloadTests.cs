using System.Text;
using System.Text.Json;
using LoraCraft.Models.Loading;
using LoraCraft.Text;
using Xunit;
using Xunit.Abstractions;
using static LoraCraft.Tests.Text.LocalHub;

namespace LoraCraft.Tests.Text;

/// <summary>`tokenizer download` against a local stand-in for the hub: never the internet.</summary>
public sealed class TokenizerDownloadTests(ITestOutputHelper output) : IDisposable
{
    const string Commit = "0123456789abcdef0123456789abcdef01234567";
    readonly TinyClipVocab _vocab = new();
    readonly LocalHub _hub = new();
    readonly TempDir _cache = new();

    public void Dispose()
    {
        _hub.Dispose();
        _cache.Dispose();
        _vocab.Dispose();
    }

    byte[] Tiny(string file) => File.ReadAllBytes(Path.Combine(_vocab.Dir, file));
    string RepoDir => TokenizerLocator.HubRepoDir(_cache.Path);

    [SkippableFact]
    public async Task RealVocabularyLandsInTheHubCacheWhereTheLocatorFindsIt()
    {
        if (FixturePaths.ClipTokenizer is not { } clip) { throw new SkipException("clip-tokenizer not found: skipped"); }
        byte[] vocab = File.ReadAllBytes(Path.Combine(clip, "vocab.json")), merges = File.ReadAllBytes(Path.Combine(clip, "merges.txt"));
        _hub.File(RepoPath + "vocab.json", vocab, Commit);
        _hub.File(RepoPath + "merges.txt", merges, Commit);

        var dir = await TokenizerDownload.DownloadAsync(null, _hub.Url, _cache.Path);

        Assert.Equal(Path.Combine(RepoDir, "snapshots", Commit), dir);
        Assert.Equal(vocab, File.ReadAllBytes(Path.Combine(dir, "vocab.json")));
        Assert.Equal(merges, File.ReadAllBytes(Path.Combine(dir, "merges.txt")));
        Assert.Equal(Commit, File.ReadAllText(Path.Combine(RepoDir, "refs", "main")));
        Assert.Equal(["refs", "snapshots"], Directory.GetFileSystemEntries(RepoDir).Select(Path.GetFileName).Order());
        Assert.Equal(dir, TokenizerLocator.HubCacheDir(_cache.Path));

        var tokenizer = TokenizerLocator.Find(null, null, "tokenizer", "model.safetensors", _cache.Path);
        using var corpus = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(clip, "tokenize-corpus.json")));
        int count = 0;
        foreach (var c in corpus.RootElement.GetProperty("cases").EnumerateArray())
        {
            var expected = c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32());
            Assert.Equal(expected, tokenizer.EncodeWithSpecials(c.GetProperty("text").GetString()!));
            count++;
        }
        Assert.True(count > 0, "empty corpus");
    }

    [SkippableFact]
    public async Task CommitSentOnlyWithARedirectStillNamesTheSnapshot()
    {
        _hub.Redirect(RepoPath + "vocab.json", "/cdn/vocab.json", Commit);
        _hub.File("/cdn/vocab.json", Tiny("vocab.json"));
        _hub.File(RepoPath + "merges.txt", Tiny("merges.txt"));

        var dir = await TokenizerDownload.DownloadAsync(null, _hub.Url, _cache.Path);

        Assert.Equal(Path.Combine(RepoDir, "snapshots", Commit), dir);
        Assert.Equal(Tiny("vocab.json"), File.ReadAllBytes(Path.Combine(dir, "vocab.json")));
    }

    [SkippableTheory]
    [InlineData(null)]
    [InlineData("../../escape")] // a header is not trusted as a folder name
    public async Task WithoutAUsableCommitTheSnapshotIsNamedMain(string? header)
    {
        _hub.File(RepoPath + "vocab.json", Tiny("vocab.json"), header);
        _hub.File(RepoPath + "merges.txt", Tiny("merges.txt"), header);

        var dir = await TokenizerDownload.DownloadAsync(null, _hub.Url + "/", _cache.Path);

        Assert.Equal(Path.Combine(RepoDir, "snapshots", "main"), dir);
        Assert.Equal("main", File.ReadAllText(Path.Combine(RepoDir, "refs", "main")));
        Assert.Equal(dir, TokenizerLocator.HubCacheDir(_cache.Path));
        Assert.Equal(["models--openai--clip-vit-large-patch14"], _cache.Entries());
    }

    [SkippableFact]
    public async Task ToDirAddsJustTheTwoFiles()
    {
        _hub.File(RepoPath + "vocab.json", Tiny("vocab.json"), Commit);
        _hub.File(RepoPath + "merges.txt", Tiny("merges.txt"), Commit);
        File.WriteAllText(_cache.File("keep.txt"), "mine");

        var dir = await TokenizerDownload.DownloadAsync(_cache.Path, _hub.Url, "/nonexistent-hub-cache");

        Assert.Equal(_cache.Path, dir);
        Assert.Equal(["keep.txt", "merges.txt", "vocab.json"], _cache.Entries().Order());
        Assert.Equal(TinyClipVocab.CatW, ClipTokenizer.FromDirectory(dir).Encode("cat").Single());
    }

    [SkippableFact]
    public async Task NotFoundIsAOneLineErrorWithTheUrlAndLeavesNothing()
    {
        _hub.File(RepoPath + "vocab.json", Tiny("vocab.json"), Commit); // merges.txt: 404

        var e = await Assert.ThrowsAsync<UserErrorException>(() => TokenizerDownload.DownloadAsync(null, _hub.Url, _cache.Path));

        output.WriteLine(e.Message);
        Assert.Contains($"{_hub.Url}{RepoPath}merges.txt", e.Message);
        Assert.Contains("HTTP 404", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Empty(_cache.Entries());
    }

    [SkippableTheory]
    [InlineData("{\"truncated\": ")]
    [InlineData("<!DOCTYPE html><html><body>Sign in to the network</body></html>")]
    [InlineData("{\"a\": 0, \"b\": 1}")] // JSON, but no CLIP vocabulary
    public async Task CorruptVocabularyIsRejectedAndLeavesNothing(string vocab)
    {
        _hub.File(RepoPath + "vocab.json", Encoding.UTF8.GetBytes(vocab), Commit);
        _hub.File(RepoPath + "merges.txt", Tiny("merges.txt"), Commit);
        var to = Path.Combine(_cache.Path, "new", "tokenizer");

        var inCache = await Assert.ThrowsAsync<UserErrorException>(() => TokenizerDownload.DownloadAsync(null, _hub.Url, _cache.Path));
        var inDir = await Assert.ThrowsAsync<UserErrorException>(() => TokenizerDownload.DownloadAsync(to, _hub.Url, _cache.Path));

        output.WriteLine(inCache.Message);
        foreach (var e in new[] { inCache, inDir })
        {
            Assert.Contains("not a CLIP tokenizer", e.Message);
            Assert.Contains("vocab.json", e.Message);
            Assert.DoesNotContain(".download-", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        Assert.Empty(_cache.Entries());
    }

    [SkippableFact]
    public async Task UnreachableHubIsAOneLineErrorWithTheUrl()
    {
        var url = $"http://127.0.0.1:{FreePort()}";

        var e = await Assert.ThrowsAsync<UserErrorException>(() => TokenizerDownload.DownloadAsync(null, url, _cache.Path));

        output.WriteLine(e.Message);
        Assert.StartsWith($"download of {url}{RepoPath}vocab.json failed: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Empty(_cache.Entries());
    }

    [SkippableTheory]
    [InlineData("huggingface.co")]
    [InlineData("ftp://example.org")]
    public async Task EndpointMustBeAnHttpUrl(string endpoint)
    {
        var e = await Assert.ThrowsAsync<UserErrorException>(() => TokenizerDownload.DownloadAsync(null, endpoint, _cache.Path));
        Assert.Contains(endpoint, e.Message);
        Assert.Empty(_cache.Entries());
    }
}
