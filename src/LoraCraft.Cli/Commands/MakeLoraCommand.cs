using System.Diagnostics;
using System.Globalization;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using static TorchSharp.torch;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>make-lora --model CKPT [--config DIR] [--tokenizer DIR] --rank R [--alpha A] [--seed N]
/// [--targets attention|all] --out FILE</c>: a random-weight kohya LoRA for that model.
/// </summary>
public static class MakeLoraCommand
{
    public static int Run(string[] argv, TextWriter stdout)
    {
        var a = new Args("make-lora", argv, flags: ["quiet"], options: ["model", "config", "tokenizer", "rank", "alpha", "seed", "targets", "out"]);
        if (a.Positionals.Count > 0) throw new UserErrorException($"'make-lora' takes no positional arguments (got '{a.Positionals[0]}')");
        // everything that needs no model is checked before the (slow) model load
        string modelPath = a.Require("model");
        int rank = a.Get("rank") is null ? throw new UserErrorException("'make-lora' needs --rank") : a.GetInt("rank", 0);
        if (rank < 1) throw new UserErrorException($"--rank must be 1 or more, got {rank}");
        double? alpha = a.Get("alpha") is null ? null : a.GetDouble("alpha", 0);
        if (alpha is { } al && !(al > 0 && double.IsFinite(al))) throw new UserErrorException($"--alpha must be a positive number, got {a.Get("alpha")}");
        long seed = a.GetLong("seed") ?? 0;
        if (seed < 0) throw new UserErrorException($"--seed must be 0 or more, got {seed}");
        var layers = a.Get("targets") switch
        {
            null or "attention" => RandomLoraLayers.Attention,
            "all" => RandomLoraLayers.All,
            var t => throw new UserErrorException($"unknown --targets '{t}' (attention or all)"),
        };
        string outPath = Path.GetFullPath(a.Require("out"));
        if (!outPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new UserErrorException($"--out must name a .safetensors file, got '{a.Get("out")}'");
        if (!Directory.Exists(Path.GetDirectoryName(outPath))) throw new UserErrorException($"--out: folder {Path.GetDirectoryName(outPath)} does not exist");

        var clock = Stopwatch.StartNew();
        // only the layers' names and shapes are needed: half precision halves the memory
        using var model = CheckpointLoader.Load(modelPath, new LoadOptions { ConfigDir = a.Get("config"), TokenizerDir = a.Get("tokenizer"), DType = ScalarType.Float16 });
        var result = RandomLora.Make(outPath, new LoraTargets(model), new RandomLoraOptions(rank, alpha, (ulong)seed, layers));
        var inv = CultureInfo.InvariantCulture;
        stdout.WriteLine("RANDOM WEIGHTS: this LoRA is not trained; use it for demos and benchmarks only.");
        stdout.WriteLine(string.Create(inv,
            $"wrote {outPath} ({model.Family.Id()}, {a.Get("targets") ?? "attention"}, rank {rank}, alpha {TextFormat.Num(result.Alpha)}, seed {seed}): " +
            $"{result.Modules} modules, {result.Parameters:N0} parameters, in {clock.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }
}
