using LoraCraft.Cli;
using LoraCraft.Cli.Commands;
using Xunit;

namespace LoraCraft.Tests.Cli;

public class HelpTests
{
    [Fact]
    public void GenerateHelpNamesEveryOptionItAccepts()
    {
        var help = CommandHelp.For("generate")!;
        foreach (var option in GenerateCommand.Options.Concat(GenerateCommand.Flags))
            Assert.Contains("--" + option, help);
    }

    [Theory]
    [InlineData("generate", "--inpaint-crop")]
    [InlineData("bench", "--lora-rank")]
    [InlineData("lora", "lora check")]
    [InlineData("prompt", "prompt schedule")]
    [InlineData("debug", "debug noise")]
    [InlineData("embeddings", "embeddings list")]
    [InlineData("worker", "--claim-timeout")]
    [InlineData("serve", "--queue redis://")]
    public void CommandHelpIsPrintedForThatCommand(string command, string expected)
    {
        var stdout = new StringWriter();
        Assert.Equal(0, LoraCraft.Cli.Cli.Run([command, "--help"], stdout, new StringWriter()));
        Assert.Contains(expected, stdout.ToString());
    }
}
