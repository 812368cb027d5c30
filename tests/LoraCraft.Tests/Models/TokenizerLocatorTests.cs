using System.Text.Json;
using LoraCraft.Models.Loading;
using LoraCraft.Tests.Text;
using Xunit;

namespace LoraCraft.Tests.Models;

/// <summary>
/// Where a single file's tokenizer comes from, in order: the user's folder, the config folder's
/// tokenizer, the hub cache. Each candidate holds a vocabulary of its own size, which tells
/// which one was picked.
/// </summary>
public sealed class TokenizerLocatorTests : IDisposable
{
    readonly TinyClipVocab _vocab = new();
    readonly TempDir _root = new();
    readonly string _user, _config, _cache;

    public TokenizerLocatorTests()
    {
        _user = Path.Combine(_root.Path, "user");
        _config = Path.Combine(_root.Path, "config");
        _cache = Path.Combine(_root.Path, "hub");
        Directory.CreateDirectory(_config);
        Directory.CreateDirectory(_cache);
    }

    public void Dispose()
    {
        _root.Dispose();
        _vocab.Dispose();
    }

    /// <summary>The tiny vocabulary plus <paramref name="extra"/> unused tokens, written to <paramref name="dir"/>.</summary>
    void Vocab(string dir, int extra)
    {
        Directory.CreateDirectory(dir);
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(_vocab.Dir, "vocab.json")))!;
        for (int i = 0; i < extra; i++) vocab[$"extra{i}</w>"] = vocab.Count;
        File.WriteAllText(Path.Combine(dir, "vocab.json"), JsonSerializer.Serialize(vocab));
        File.Copy(Path.Combine(_vocab.Dir, "merges.txt"), Path.Combine(dir, "merges.txt"));
    }

    string Snapshot(string name) => Path.Combine(TokenizerLocator.HubRepoDir(_cache), "snapshots", name);

    int FoundSize(string? user, string? config, string sub = "tokenizer") =>
        TokenizerLocator.Find(user, config, sub, "model.safetensors", _cache).VocabSize - TinyVocabSize;

    const int TinyVocabSize = TinyClipVocab.End + 1;

    [SkippableFact]
    public void UserFolderComesFirst()
    {
        Vocab(_user, 1);
        Vocab(Path.Combine(_config, "tokenizer"), 2);
        Vocab(Snapshot("abc"), 3);
        Assert.Equal(1, FoundSize(_user, _config));
    }

    [SkippableFact]
    public void ConfigFolderTokenizerComesBeforeTheHubCache()
    {
        Vocab(Path.Combine(_config, "tokenizer"), 2);
        Vocab(Snapshot("abc"), 3);
        Assert.Equal(2, FoundSize(null, _config));
    }

    [SkippableFact]
    public void SecondEncoderTakesTokenizer2ElseTheFirstTokenizer()
    {
        Vocab(Path.Combine(_config, "tokenizer"), 2);
        Assert.Equal(2, FoundSize(null, _config, "tokenizer_2"));
        Vocab(Path.Combine(_config, "tokenizer_2"), 4);
        Assert.Equal(4, FoundSize(null, _config, "tokenizer_2"));
        Assert.Equal(2, FoundSize(null, _config, "tokenizer"));
    }

    [SkippableFact]
    public void HubCacheWhenNeitherUserNorConfigHasOne()
    {
        Vocab(Snapshot("abc"), 3);
        Directory.CreateDirectory(Snapshot("partial")); // an unfinished snapshot without the files is passed over
        File.WriteAllText(Path.Combine(Snapshot("partial"), "vocab.json"), "{}");
        Directory.SetLastWriteTimeUtc(Snapshot("abc"), DateTime.UtcNow.AddHours(-1));
        Assert.Equal(3, FoundSize(null, _config));
        Assert.Equal(3, FoundSize(null, null));
        Assert.Equal(Snapshot("abc"), TokenizerLocator.HubCacheDir(_cache));
    }

    [SkippableFact]
    public void NothingFoundSaysHowToProvideOne()
    {
        var e = Assert.Throws<UserErrorException>(() => TokenizerLocator.Find(null, _config, "tokenizer", "/models/x.safetensors", _cache));
        Assert.StartsWith("/models/x.safetensors: no CLIP tokenizer found", e.Message);
        Assert.Contains("give a tokenizer folder (vocab.json + merges.txt)", e.Message);
        Assert.Contains("'loracraft tokenizer download'", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Null(TokenizerLocator.HubCacheDir(_cache));
    }
}
