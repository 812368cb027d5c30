using System.Text;
using System.Text.Json;
using LoraCraft.Text;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Text;

/// <summary>Every reference case must give exactly transformers' ids; a failure lists all cases that differ.</summary>
public class ClipTokenizerConformanceTests(ITestOutputHelper output)
{
    [SkippableFact]
    public void SyntheticVocabularyCorpus() =>
        CheckCorpus(FixturePaths.Root is { } r ? Path.Combine(r, "tokenizer") : null,
            FixturePaths.Root is { } f ? Path.Combine(f, "tokenize-corpus.json") : null);

    [SkippableFact]
    public void RealClipVocabularyCorpus() =>
        CheckCorpus(FixturePaths.ClipTokenizer,
            FixturePaths.ClipTokenizer is { } c ? Path.Combine(c, "tokenize-corpus.json") : null);

    [SkippableFact]
    public void TokenizeCases()
    {
        if (FixturePaths.Root is not { } root) { throw new SkipException("fixtures not found: skipped"); }
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(root, "cases.json")));
        var tokenizers = new Dictionary<string, ClipTokenizer>();
        var failures = new StringBuilder();
        int count = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            if (c.GetProperty("kind").GetString() != "tokenize") continue;
            count++;
            string vocab = c.GetProperty("vocab").GetString()!;
            if (!tokenizers.TryGetValue(vocab, out var tokenizer))
                tokenizers[vocab] = tokenizer = ClipTokenizer.FromDirectory(Path.Combine(root, vocab));
            Compare(tokenizer, c.GetProperty("text").GetString()!, Ids(c), null, failures);
        }
        Report(count, failures);
    }

    void CheckCorpus(string? vocabDir, string? corpus)
    {
        if (vocabDir == null || corpus == null || !File.Exists(corpus)) { throw new SkipException("fixtures not found: skipped"); }
        var tokenizer = ClipTokenizer.FromDirectory(vocabDir);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(corpus));
        var failures = new StringBuilder();
        int count = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            count++;
            var tokens = c.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray();
            Compare(tokenizer, c.GetProperty("text").GetString()!, Ids(c), tokens, failures);
        }
        Report(count, failures);
    }

    static int[] Ids(JsonElement c) => c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray();

    static void Compare(ClipTokenizer tokenizer, string text, int[] expected, string[]? tokens, StringBuilder failures)
    {
        var got = tokenizer.EncodeWithSpecials(text);
        if (!got.SequenceEqual(expected))
        {
            failures.AppendLine($"{JsonSerializer.Serialize(text)}\n  expected [{string.Join(",", expected)}]\n  got      [{string.Join(",", got)}]");
            return;
        }
        var gotTokens = got[1..^1].Select(tokenizer.TokenString).ToArray();
        if (tokens != null && !gotTokens.SequenceEqual(tokens))
            failures.AppendLine($"{JsonSerializer.Serialize(text)}: token strings differ: got {string.Join(" ", gotTokens)}");
    }

    void Report(int count, StringBuilder failures)
    {
        output.WriteLine($"{count} cases");
        Assert.True(count > 0, "no cases found");
        Assert.True(failures.Length == 0, "cases that differ from the reference:\n" + failures);
    }
}
