using Xunit;

namespace LoraCraft.Tests.Cli;

/// <summary>`serve --civitai-url/--hf-url`: checked before the server starts, like `lora get`'s.</summary>
public class ServeHubOptionsTests
{
    [Theory]
    [InlineData("--civitai-url", "ftp://mirror.example")]
    [InlineData("--hf-url", "not a url")]
    public void ABadHubUrlIsRefusedBeforeTheServerStarts(string option, string value)
    {
        using var dir = new TempDir();
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(["serve", "--port", "0", "--ckpt-dir", dir.Path, option, value], stdout, stderr);
        Assert.Equal(2, code);
        Assert.Contains($"{option} '{value}' is not an http(s) URL", stderr.ToString());
    }
}
