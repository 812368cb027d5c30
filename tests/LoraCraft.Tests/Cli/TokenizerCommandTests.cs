using LoraCraft.Tests.Text;
using Xunit;
using static LoraCraft.Tests.Text.LocalHub;

namespace LoraCraft.Tests.Cli;

public sealed class TokenizerCommandTests : IDisposable
{
    readonly TinyClipVocab _vocab = new();
    readonly LocalHub _hub = new();
    readonly TempDir _dir = new();

    public void Dispose()
    {
        _hub.Dispose();
        _dir.Dispose();
        _vocab.Dispose();
    }

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [SkippableFact]
    public void DownloadToAFolderThenTokenizeWithIt()
    {
        foreach (var file in new[] { "vocab.json", "merges.txt" })
            _hub.File(RepoPath + file, File.ReadAllBytes(Path.Combine(_vocab.Dir, file)));
        var to = Path.Combine(_dir.Path, "clip");

        var (code, stdout, stderr) = Run("tokenizer", "download", "--to", to, "--base-url", _hub.Url);

        Assert.Equal(0, code);
        Assert.Empty(stderr);
        Assert.Contains($"--tokenizer {to}", stdout);
        Assert.Equal($"{TinyClipVocab.Start} {TinyClipVocab.CatW} {TinyClipVocab.End}", Run("tokenize", "--tokenizer", to, "cat").Out.Trim());
    }

    [SkippableFact]
    public void FailedDownloadIsOneStderrLineAndExitCode2()
    {
        var to = Path.Combine(_dir.Path, "clip");

        var (code, stdout, stderr) = Run("tokenizer", "download", "--to", to, "--base-url", _hub.Url);

        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.Equal($"error: download of {_hub.Url}{RepoPath}vocab.json failed: HTTP 404 Not Found", stderr.TrimEnd('\n'));
        Assert.False(Directory.Exists(to));
    }

    [SkippableTheory]
    [InlineData("tokenizer")]
    [InlineData("tokenizer", "fetch")]
    [InlineData("tokenizer", "download", "extra")]
    public void OtherSubcommandsAreUsageErrors(params string[] args)
    {
        var (code, _, stderr) = Run(args);
        Assert.Equal(2, code);
        Assert.Equal("error: usage: loracraft tokenizer download [--to DIR] [--base-url URL]", stderr.TrimEnd('\n'));
    }
}
