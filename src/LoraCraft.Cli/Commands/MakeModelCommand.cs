using System.Diagnostics;
using System.Globalization;
using LoraCraft.Models.Random;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>make-model --family sd15|sd15-inpaint|sd2|sdxl --size full|tiny [--seed N] --out FILE</c>:
/// a random-weight single-file checkpoint (fp16, original key layout); tiny ones also get a
/// config folder FILE-without-extension.config/ to load them with.
/// </summary>
public static class MakeModelCommand
{
    public static int Run(string[] argv, TextWriter stdout)
    {
        var args = new Args("make-model", argv, flags: ["quiet"], options: ["family", "size", "seed", "out"]);
        if (args.Positionals.Count > 0) throw new UserErrorException($"'make-model' takes no positional arguments (got '{args.Positionals[0]}')");
        var kind = args.Require("family") switch
        {
            "sd15" => RandomModelKind.Sd15,
            "sd15-inpaint" => RandomModelKind.Sd15Inpaint,
            "sd2" => RandomModelKind.Sd2,
            "sdxl" => RandomModelKind.Sdxl,
            var f => throw new UserErrorException($"unknown --family '{f}' (sd15, sd15-inpaint, sd2 or sdxl)"),
        };
        var size = args.Require("size") switch
        {
            "full" => RandomModelSize.Full,
            "tiny" => RandomModelSize.Tiny,
            var s => throw new UserErrorException($"unknown --size '{s}' (full or tiny)"),
        };
        long seed = args.GetLong("seed") ?? 0;
        if (seed < 0) throw new UserErrorException($"--seed must be 0 or more, got {seed}");
        var path = Path.GetFullPath(args.Require("out"));

        var arch = RandomArchitecture.Of(kind, size);
        var plan = RandomCheckpoint.Plan(arch);
        long parameters = plan.Sum(p => p.Shape.Aggregate(1L, (n, d) => n * d));
        var inv = CultureInfo.InvariantCulture;
        string what = $"{RandomCheckpoint.Id(kind)} {(size == RandomModelSize.Tiny ? "tiny" : "full")}, seed {seed}";
        if (!args.Flag("quiet"))
            stdout.WriteLine(string.Create(inv, $"writing {path} ({what}): {plan.Count} tensors, {parameters:N0} parameters, {parameters * 2 / 1048576.0:F1} MiB"));
        var clock = Stopwatch.StartNew();
        var configDir = RandomCheckpoint.Make(path, arch, (ulong)seed);
        stdout.WriteLine("RANDOM WEIGHTS: this checkpoint is not trained and draws noise; use it for demos and benchmarks only.");
        stdout.WriteLine(string.Create(inv, $"wrote {path} ({what}) in {clock.Elapsed.TotalSeconds:F1} s"));
        stdout.WriteLine(configDir is not null
            ? $"load it with: --config {configDir}"
            : "load it with the CLIP tokenizer (openai/clip-vit-large-patch14): --tokenizer DIR or the Hugging Face cache");
        return 0;
    }
}
