using System.Text.Json;
using LoraCraft.Text;
using Xunit;
using Xunit.Abstractions;
using static LoraCraft.Tests.Text.TinyClipVocab;

namespace LoraCraft.Tests.Text;

public sealed class ClipTokenizerTests : IDisposable
{
    readonly TinyClipVocab _vocab = new();
    ClipTokenizer Tiny => field ??= ClipTokenizer.FromDirectory(_vocab.Dir);

    public void Dispose() => _vocab.Dispose();

    [SkippableFact]
    public void MergesApplyByRankAndEndOfWordMarksTheLastSymbol()
    {
        Assert.Equal([CatW], Tiny.Encode("cat"));
        // "t</w>" is not "t": no "ca t" merge inside a longer word
        Assert.Equal([Ca, Byte('t'), ByteW('s')], Tiny.Encode("cats"));
        Assert.Equal([TheW, CatW, Byte('o'), ByteW('n')], Tiny.Encode("the cat on"));
        Assert.Equal("cat</w>", Tiny.TokenString(CatW));
        Assert.Equal(519, Tiny.VocabSize);
        Assert.Equal((Start, End), (Tiny.StartId, Tiny.EndId));
    }

    [SkippableFact]
    public void WhitespaceRunsTabsAndNewlinesOnlySeparate()
    {
        var expected = Tiny.Encode("the cat a");
        Assert.Equal(expected, Tiny.Encode("  the\t\tcat\n\n a \r\n"));
        Assert.Equal(expected, Tiny.Encode("the\u00A0cat\u3000a\u2029"));
        Assert.Equal([Start, End], Tiny.EncodeWithSpecials(" \t\n"));
    }

    [SkippableFact]
    public void TextIsLowerCased()
    {
        Assert.Equal(Tiny.Encode("the cat"), Tiny.Encode("THE CaT"));
        Assert.Equal(Tiny.Encode("σσ"), Tiny.Encode("ΣΣ")); // per character: no final-sigma rule
        // U+0130 lower-cases to two code points, i + combining dot (CC 87), which split apart
        Assert.Equal([ByteW('i'), 0xCC, 256 + 0x87], Tiny.Encode("\u0130"));
    }

    [SkippableFact]
    public void DecomposedAccentsAreComposedFirst()
    {
        Assert.Equal(Tiny.Encode("café"), Tiny.Encode("cafe\u0301"));
        Assert.Equal(Tiny.Encode("\u1EC7"), Tiny.Encode("e\u0323\u0302")); // ệ: marks reordered, then composed
        Assert.Equal(Tiny.Encode("\u1EC7"), Tiny.Encode("e\u0302\u0323"));
        Assert.Equal(Tiny.Encode("한"), Tiny.Encode("\u1112\u1161\u11AB")); // Hangul jamo
        Assert.Equal(Tiny.Encode("\u03C9"), Tiny.Encode("\u2126")); // ohm sign -> omega (then lower case)
    }

    [SkippableFact]
    public void SplitFollowsTheClipPattern()
    {
        // contraction, one digit per piece, punctuation runs, letters outside the BMP stay in their word
        Assert.Equal(["o", "n</w>", "'", "t</w>", "1</w>", "2</w>", "!", "?</w>"],
            Tiny.Encode("on't12!?").Select(Tiny.TokenString));
        var word = Tiny.Encode("a\U0001D400b").Select(Tiny.TokenString).ToArray();
        Assert.Equal(6, word.Length);
        Assert.Single(word, t => t.EndsWith("</w>"));
    }

    [SkippableFact]
    public void SpecialTokensInTextBecomeTheirIds()
    {
        Assert.Equal([CatW, End, Start, TheW], Tiny.Encode("cat<|endoftext|><|startoftext|>the"));
        Assert.Equal([ByteW('!'), End], Tiny.Encode("!<|ENDOFTEXT|>"));
    }

    [SkippableFact]
    public void EncodeForModelTruncatesKeepingTheEndToken()
    {
        string text = string.Join(" ", Enumerable.Range(0, 100).Select(i => i % 2 == 0 ? "cat" : "the"));
        var all = Tiny.EncodeWithSpecials(text);
        Assert.Equal(102, all.Length);
        var ids = Tiny.EncodeForModel(text);
        Assert.Equal(77, ids.Length);
        Assert.Equal(all[..76], ids[..76]);
        Assert.Equal(End, ids[76]);
        Assert.Equal([Start, CatW, TheW, End], Tiny.EncodeForModel(text, maxLength: 4));
    }

    [SkippableFact]
    public void EncodeForModelPadsWithTheChosenId()
    {
        var ids = Tiny.EncodeForModel("the cat", 8, padId: 0);
        Assert.Equal([Start, TheW, CatW, End, 0, 0, 0, 0], ids);
        Assert.Equal([Start, TheW, CatW, End, End, End], Tiny.EncodeForModel("the cat", 6));
        Assert.Equal([Start, TheW, CatW, End], Tiny.EncodeForModel("the cat", 4, padId: 0));
    }

    [SkippableFact]
    public void ConcurrentUseGivesTheSameIds()
    {
        string[] texts = ["the cat", "cats on the cat", "ünïcödé 東京", "don't 12 !!", "CAT ON THE"];
        var expected = texts.Select(t => ClipTokenizer.FromDirectory(_vocab.Dir).EncodeWithSpecials(t)).ToArray();
        var shared = Tiny;
        Parallel.For(0, 2000, i =>
        {
            var got = shared.EncodeWithSpecials(texts[i % texts.Length]);
            Assert.Equal(expected[i % texts.Length], got);
        });
    }

    [SkippableFact]
    public void TokenizerJsonGivesTheSameIds()
    {
        if (FixturePaths.Root is not { } root) { throw new SkipException("fixtures not found: skipped"); }
        string source = Path.Combine(root, "tokenizer");
        var reference = ClipTokenizer.FromDirectory(source);
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(source, "vocab.json")))!;
        var merges = File.ReadAllLines(Path.Combine(source, "merges.txt")).Skip(1).Where(l => l.Length > 0).ToArray();
        string[] texts = ["a photo of a cat", "Ghibli style, a girl in a field of flowers", "don't stop; it's 3:45pm — café"];

        foreach (bool asArrays in new[] { false, true })
        {
            var dir = Directory.CreateTempSubdirectory("loracraft-tokjson-").FullName;
            try
            {
                object mergeList = asArrays ? merges.Select(m => m.Split(' ')).ToArray() : merges;
                var json = new { version = "1.0", model = new { type = "BPE", vocab, merges = mergeList } };
                File.WriteAllText(Path.Combine(dir, "tokenizer.json"), JsonSerializer.Serialize(json));
                var fromJson = ClipTokenizer.FromDirectory(dir);
                Assert.Equal(reference.VocabSize, fromJson.VocabSize);
                foreach (var t in texts) Assert.Equal(reference.EncodeWithSpecials(t), fromJson.EncodeWithSpecials(t));
            }
            finally { Directory.Delete(dir, true); }
        }
    }

    [SkippableFact]
    public void MissingFolderOrFilesAreUserErrorsNamingTheFolder()
    {
        string missing = Path.Combine(_vocab.Dir, "nope");
        Assert.Contains(missing, Assert.Throws<UserErrorException>(() => ClipTokenizer.FromDirectory(missing)).Message);
        string empty = Directory.CreateDirectory(Path.Combine(_vocab.Dir, "empty")).FullName;
        var e = Assert.Throws<UserErrorException>(() => ClipTokenizer.FromDirectory(empty));
        Assert.Contains(empty, e.Message);
        Assert.Contains("vocab.json", e.Message);
    }

    [SkippableFact]
    public void MalformedFilesAreUserErrorsNamingTheFile()
    {
        string bad = Directory.CreateDirectory(Path.Combine(_vocab.Dir, "bad")).FullName;
        File.Copy(Path.Combine(_vocab.Dir, "vocab.json"), Path.Combine(bad, "vocab.json"));
        File.WriteAllText(Path.Combine(bad, "merges.txt"), "#version: 0.2\nc a\nthree parts here\n");
        Assert.Contains("merges.txt:3", Assert.Throws<UserErrorException>(() => ClipTokenizer.FromDirectory(bad)).Message);

        File.WriteAllText(Path.Combine(bad, "merges.txt"), "x y\n");
        Assert.Contains("'x y'", Assert.Throws<UserErrorException>(() => ClipTokenizer.FromDirectory(bad)).Message);

        File.WriteAllText(Path.Combine(bad, "vocab.json"), "{\"a\": ");
        Assert.Contains("vocab.json", Assert.Throws<UserErrorException>(() => ClipTokenizer.FromDirectory(bad)).Message);

        File.WriteAllText(Path.Combine(bad, "vocab.json"), "{\"a\": 0}");
        File.WriteAllText(Path.Combine(bad, "merges.txt"), "");
        Assert.Contains("<|startoftext|>", Assert.Throws<UserErrorException>(() => ClipTokenizer.FromDirectory(bad)).Message);
    }
}
