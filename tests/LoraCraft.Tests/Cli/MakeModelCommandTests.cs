using LoraCraft.Models.Loading;
using LoraCraft.Runtime;
using Xunit;

namespace LoraCraft.Tests.Cli;

public class MakeModelCommandTests
{
    public MakeModelCommandTests() => TorchNative.Ensure();

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [SkippableTheory]
    [InlineData("--family", "sd3", "--size", "tiny", "unknown --family 'sd3'")]
    [InlineData("--family", "sd15", "--size", "huge", "unknown --size 'huge'")]
    [InlineData("--family", "sd15", "--size", "tiny", "needs --out")]
    [InlineData("--size", "tiny", "--out", "x.safetensors", "needs --family")]
    public void BadOptionsAreOneLineUserErrors(string a, string b, string c, string d, string message)
    {
        var (code, output, err) = Run(["make-model", a, b, c, d]);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains(message, err);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
    }

    [SkippableFact]
    public void NegativeSeedIsAUserError()
    {
        using var dir = new TempDir();
        var (code, _, err) = Run("make-model", "--family", "sd15", "--size", "tiny", "--seed", "-1", "--out", dir.File("m.safetensors"));
        Assert.Equal(2, code);
        Assert.Contains("--seed must be 0 or more", err);
        Assert.Empty(dir.Entries());
    }

    [SkippableFact]
    public void TinyModelSaysItIsRandomAndPrintsTheConfigToLoadItWith()
    {
        using var dir = new TempDir();
        var path = dir.File("demo.safetensors");
        var (code, output, err) = Run("make-model", "--family", "sd15-inpaint", "--size", "tiny", "--seed", "4", "--out", path);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Contains("RANDOM WEIGHTS", output);
        var configDir = dir.File("demo.config");
        Assert.Contains($"load it with: --config {configDir}\n", output.ReplaceLineEndings("\n"));
        using var model = CheckpointLoader.Load(path, new LoadOptions { ConfigDir = configDir });
        Assert.True(model.Inpainting);
    }
}
