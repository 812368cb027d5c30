using LoraCraft.Tests.Text;
using Xunit;
using static LoraCraft.Tests.Text.TinyClipVocab;

namespace LoraCraft.Tests.Cli;

public sealed class TokenizeCommandTests : IDisposable
{
    readonly TinyClipVocab _vocab = new();

    public void Dispose() => _vocab.Dispose();

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [SkippableFact]
    public void PrintsIdsWithStartAndEndOnOneLine()
    {
        var (code, stdout, stderr) = Run("tokenize", "--tokenizer", _vocab.Dir, "The", "cat");
        Assert.Equal(0, code);
        Assert.Equal($"{Start} {TheW} {CatW} {End}\n", stdout.ReplaceLineEndings("\n"));
        Assert.Empty(stderr);
    }

    [SkippableFact]
    public void JsonPrintsAnArray()
    {
        var (code, stdout, _) = Run("tokenize", "--json", "--tokenizer", _vocab.Dir, "cat on");
        Assert.Equal(0, code);
        Assert.Equal($"[{Start},{CatW},{Byte('o')},{ByteW('n')},{End}]", stdout.Trim());
    }

    [SkippableFact]
    public void MissingTokenizerOptionOrFolderIsAOneLineUserError()
    {
        var (code, stdout, stderr) = Run("tokenize", "a cat");
        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.Equal("error: 'tokenize' needs --tokenizer", stderr.Trim());

        string missing = Path.Combine(_vocab.Dir, "missing");
        (code, _, stderr) = Run("tokenize", "--tokenizer", missing, "a cat");
        Assert.Equal(2, code);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Contains(missing, stderr);
    }

    [SkippableFact]
    public void MissingTextIsAUserError()
    {
        var (code, _, stderr) = Run("tokenize", "--tokenizer", _vocab.Dir);
        Assert.Equal(2, code);
        Assert.Contains("TEXT", stderr);
    }

    [SkippableFact]
    public void BenchReportsColdAndWarmRates()
    {
        string prompts = Path.Combine(_vocab.Dir, "prompts.txt");
        File.WriteAllLines(prompts, ["the cat", "", "cats on the cat", "CAT 12"]);
        var (code, stdout, stderr) = Run("tokenize", "--tokenizer", _vocab.Dir, "--bench", prompts, "--seconds", "0.2");
        Assert.True(code == 0, stderr);
        Assert.StartsWith("3 prompts", stdout);
        Assert.Matches(@"cold: \d+ prompts/s", stdout);
        Assert.Matches(@"warm: \d+ prompts/s", stdout);
    }
}
