using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Runtime;
using LoraCraft.Tests.Lora;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Cli;

/// <summary>The `lora` tool subcommands end to end on a tiny model (the numbers are tested in LoraToolsTests).</summary>
public class LoraToolsCommandTests(ITestOutputHelper output)
{
    static LoraToolsCommandTests() => TorchNative.Ensure();

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(args, stdout, stderr);
        return (code, stdout.ToString().ReplaceLineEndings("\n"), stderr.ToString());
    }

    [SkippableFact]
    public void EveryToolRunsFromTheCommandLine()
    {
        using var dir = new TempDir();
        var model = dir.File("m.safetensors");
        var config = RandomCheckpoint.Make(model, RandomArchitecture.Of(RandomModelKind.Sd15, RandomModelSize.Tiny), seed: 3)!;
        var lora = dir.File("l.safetensors");
        using (var m = CheckpointLoader.Load(model, new LoadOptions { ConfigDir = config }))
            RandomLora.Make(lora, new LoraTargets(m), new RandomLoraOptions(Rank: 4, Seed: 1, Layers: RandomLoraLayers.All));
        string F(string name) => dir.File(name + ".safetensors");
        (string[] Args, string Expect)[] steps =
        [
            (["lora", "merge-into", "--model", model, "--lora", lora + ":0.8", "--te-strength", "0.5", "--dtype", "fp32", "--out", F("tuned")], " changed"),
            (["lora", "extract", "--base", model, "--tuned", F("tuned"), "--rank", "4", "--conv-rank", "2", "--sv-fro", "0.99", "--min-diff", "0", "--out", F("ex")], "Frobenius norm kept"),
            (["lora", "resize", lora, "--new-rank", "2", "--verbose", "--out", F("r")], "rank 4 -> 2"),
            (["lora", "resize", lora, "--dynamic-method", "sv_ratio", "--dynamic-param", "2", "--out", F("rd")], "modules resized"),
            (["lora", "merge", lora + ":0.5", F("r") + ":0.5", "--concat", "--out", F("c")], "rank up to 6"),
            (["lora", "merge", lora, F("r"), "--svd-rank", "3", "--out", F("s")], "rank up to 3"),
            (["lora", "convert", lora, "--to", "peft", "--model", model, "--out", F("p")], "peft names"),
            (["lora", "convert", F("p"), "--to", "kohya", "--model", model, "--out", F("k")], "kohya names"),
            (["lora", "bake-blocks", lora, "--blocks", "MIDD", "--model", model, "--out", F("b")], "left out (weight 0)"),
        ];
        foreach (var (args, expect) in steps)
        {
            var (code, text, err) = Run(args);
            output.WriteLine(string.Join(" ", args.Take(2)) + ": " + text + err);
            Assert.True(code == 0, $"{string.Join(" ", args)}: {err}");
            Assert.Contains(expect, text);
        }
        Assert.All(new[] { "ex", "r", "rd", "c", "s", "p", "k", "b" }, n => Assert.NotNull(LoraInfo.Read(F(n))));
        // an existing output is refused, and nothing is half written
        var (again, _, refusal) = Run(steps[2].Args);
        Assert.Equal(2, again);
        Assert.Contains("exists", refusal);
        Assert.Equal(0, Run([.. steps[2].Args, "--force"]).Code);
        var (help, helpText, _) = Run("lora", "--help");
        Assert.Equal(0, help);
        foreach (var sub in LoraCraft.Cli.Commands.LoraToolsCommand.Subcommands) Assert.Contains("lora " + sub, helpText);
    }
}
