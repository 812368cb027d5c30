using System.Globalization;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Lora.Tools;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>loracraft lora merge-into|extract|resize|merge|convert|bake-blocks</c>: the LoRA tools,
/// each a thin mapping of options onto <see cref="LoraCraft.Lora.Tools"/>.
/// </summary>
public static class LoraToolsCommand
{
    public static readonly string[] Subcommands = ["merge-into", "extract", "resize", "merge", "convert", "bake-blocks"];
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static int Run(string subcommand, string[] argv, TextWriter stdout) => subcommand switch
    {
        "merge-into" => MergeInto(argv, stdout),
        "extract" => Extract(argv, stdout),
        "resize" => Resize(argv, stdout),
        "merge" => Merge(argv, stdout),
        "convert" => Convert(argv, stdout),
        "bake-blocks" => BakeBlocks(argv, stdout),
        _ => throw new UserErrorException($"unknown 'lora' subcommand '{subcommand}'"),
    };

    static int MergeInto(string[] argv, TextWriter stdout)
    {
        var a = new Args("lora merge-into", argv, flags: ["force", "quiet"], options: ["model", "lora", "te-strength", "dtype", "out"]);
        if (a.Positionals.Count > 0) throw new UserErrorException($"'lora merge-into' takes no positional arguments (got '{a.Positionals[0]}')");
        string model = a.Require("model"), output = a.Require("out");
        double? te = a.Get("te-strength") is null ? null : a.GetDouble("te-strength", 1);
        var loras = a.GetAll("lora").Select(value =>
        {
            var tag = LoraTags.ParseOption(value);
            if (tag.UNetSchedule is not null || tag.TextEncoderSchedule is not null)
                throw new UserErrorException($"--lora '{value}': a checkpoint has one strength; keyframes do not apply");
            if (!File.Exists(tag.Name)) throw new FileNotFoundException($"--lora: file not found: {tag.Name}", tag.Name);
            // FILE:UNET takes --te-strength for the text encoders, FILE:UNET:TE its own
            bool ownTe = value.Split(':').Length - tag.Name.Split(':').Length == 2;
            return new LoraStrength(tag.Name, tag.UNet, !ownTe && te is { } t ? t : tag.TextEncoder);
        }).ToList();
        if (loras.Count == 0) throw new UserErrorException("'lora merge-into' needs --lora FILE[:UNET[:TE]] (repeatable)");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = LoraMergeInto.Run(new MergeIntoRequest(model, loras, output) { DType = ToolFiles.ParseDType(a.Get("dtype")), Force = a.Flag("force") });
        foreach (var (name, matched, unmatched) in result.Loras)
            stdout.WriteLine(unmatched.Count == 0 ? $"{name}: {matched} modules merged"
                : $"{name}: {matched} modules merged, {unmatched.Count} keys match no layer (e.g. {string.Join(", ", unmatched.Take(3))})");
        stdout.WriteLine(string.Create(Inv, $"wrote {result.Output}: {result.Tensors} tensors, {result.Changed} changed, in {clock.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }

    static int Extract(string[] argv, TextWriter stdout)
    {
        var a = new Args("lora extract", argv, flags: ["force", "quiet"],
                         options: ["base", "tuned", "rank", "conv-rank", "sv-ratio", "sv-fro", "sv-cumulative", "clamp-quantile", "min-diff", "dtype", "out"]);
        if (a.Positionals.Count > 0) throw new UserErrorException($"'lora extract' takes no positional arguments (got '{a.Positionals[0]}')");
        var rule = new RankRule(a.GetInt("rank", 0) is var rank && rank > 0 ? rank : throw new UserErrorException("'lora extract' needs --rank R (1 or more)"));
        rule = Dynamic(a, rule);
        var request = new ExtractRequest(a.Require("base"), a.Require("tuned"), rule, a.Require("out"))
        {
            ConvRank = a.Get("conv-rank") is null ? null : a.GetInt("conv-rank", 0),
            ClampQuantile = a.GetDouble("clamp-quantile", 0.99),
            MinDiff = a.GetDouble("min-diff", 0.01),
            DType = ToolFiles.ParseDType(a.Get("dtype")) ?? SafeDType.F32,
            Force = a.Flag("force"),
        };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = LoraExtract.Run(request);
        if (!result.TextEncoders)
            stdout.WriteLine(string.Create(Inv, $"text encoders are the same (largest difference {result.TextEncoderMaxDiff:G3} <= {request.MinDiff}): UNet only"));
        double fro = result.Modules.Count == 0 ? 1 : result.Modules.Average(m => m.FroRetained);
        stdout.WriteLine(string.Create(Inv, $"wrote {result.Output}: {result.Modules.Count} modules, ranks {result.Modules.Min(m => m.Rank)}-{result.Modules.Max(m => m.Rank)}, Frobenius norm kept {fro:P1} on average, in {clock.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }

    /// <summary>--sv-ratio / --sv-fro / --sv-cumulative X (at most one), the rank as their cap.</summary>
    static RankRule Dynamic(Args a, RankRule rule)
    {
        var given = new[] { ("sv-ratio", RankMethod.SvRatio), ("sv-fro", RankMethod.SvFro), ("sv-cumulative", RankMethod.SvCumulative) }
            .Where(o => a.Get(o.Item1) is not null).ToList();
        if (given.Count > 1) throw new UserErrorException("give at most one of --sv-ratio, --sv-fro, --sv-cumulative");
        return given.Count == 0 ? rule : rule with { Method = given[0].Item2, Param = a.GetDouble(given[0].Item1, 0) };
    }

    static int Resize(string[] argv, TextWriter stdout)
    {
        var a = new Args("lora resize", argv, flags: ["force", "quiet", "verbose"], options: ["new-rank", "new-conv-rank", "dynamic-method", "dynamic-param", "dtype", "out"]);
        if (a.Positionals.Count != 1) throw new UserErrorException("'lora resize' takes one LoRA file");
        if (a.Get("new-rank") is null && a.Get("dynamic-method") is null) throw new UserErrorException("'lora resize' needs --new-rank R or --dynamic-method M --dynamic-param P");
        var rule = new RankRule(a.GetInt("new-rank", int.MaxValue));
        if (a.Get("dynamic-method") is { } method)
        {
            if (a.Get("dynamic-param") is null) throw new UserErrorException("--dynamic-method needs --dynamic-param");
            rule = rule with { Method = RankRule.ParseMethod(method), Param = a.GetDouble("dynamic-param", 0) };
        }
        var result = LoraResize.Run(new ResizeRequest(a.Positionals[0], rule, a.Require("out"))
        {
            ConvRank = a.Get("new-conv-rank") is null ? null : a.GetInt("new-conv-rank", 0),
            DType = ToolFiles.ParseDType(a.Get("dtype")),
            Force = a.Flag("force"),
        });
        if (a.Flag("verbose"))
            foreach (var m in result.Modules)
                stdout.WriteLine(string.Create(Inv, $"{m.Key,-80} rank {m.OldRank} -> {m.NewRank}, Frobenius norm kept {m.FroRetained:P1}, sum(S) kept {m.SumRetained:P1}"));
        if (result.Unchanged.Count > 0)
            stdout.WriteLine($"{result.Unchanged.Count} modules are not LoRA/LoCon (or carry DoRA) and were copied unchanged (e.g. {string.Join(", ", result.Unchanged.Take(3))})");
        double std = result.Modules.Count == 0 ? 0 : Math.Sqrt(result.Modules.Average(m => Math.Pow(m.FroRetained - result.AverageFroRetained, 2)));
        stdout.WriteLine(string.Create(Inv, $"wrote {result.Output}: {result.Modules.Count} modules resized, Frobenius norm kept {result.AverageFroRetained:P2} on average (std {std:F3})"));
        return 0;
    }

    static int Merge(string[] argv, TextWriter stdout)
    {
        var a = new Args("lora merge", argv, flags: ["force", "quiet", "concat"], options: ["svd-rank", "dtype", "out"]);
        if (a.Positionals.Count < 2) throw new UserErrorException("'lora merge' takes two LoRAs or more: A[:W] B[:W] ...");
        if (a.Flag("concat") && a.Get("svd-rank") is not null) throw new UserErrorException("give --concat or --svd-rank, not both");
        var loras = a.Positionals.Select(v =>
        {
            var tag = LoraTags.ParseOption(v);
            if (!File.Exists(tag.Name)) throw new FileNotFoundException($"LoRA not found: {tag.Name}", tag.Name);
            return new WeightedLora(tag.Name, tag.UNet);
        }).ToList();
        var result = LoraMerge.Run(new MergeRequest(loras, a.Require("out"))
        {
            SvdRank = a.Get("svd-rank") is null ? null : a.GetInt("svd-rank", 0),
            DType = ToolFiles.ParseDType(a.Get("dtype")) ?? SafeDType.F16,
            Force = a.Flag("force"),
        });
        stdout.WriteLine(string.Create(Inv, $"wrote {result.Output}: {result.Modules} modules, rank up to {result.MaxRank}"));
        return 0;
    }

    static int Convert(string[] argv, TextWriter stdout)
    {
        var a = new Args("lora convert", argv, flags: ["force", "quiet"], options: ["to", "model", "family", "out"]);
        if (a.Positionals.Count != 1) throw new UserErrorException("'lora convert' takes one LoRA file");
        var to = a.Require("to") switch
        {
            "kohya" => LoraNaming.Kohya,
            "peft" or "diffusers" => LoraNaming.Peft,
            var t => throw new UserErrorException($"--to must be kohya or peft, got '{t}'"),
        };
        var result = LoraConvert.Run(new ConvertRequest(a.Positionals[0], to, a.Require("out"))
        {
            Model = a.Get("model"), Family = a.Get("family") is { } f ? ToolTargets.ParseFamily(f) : null, Force = a.Flag("force"),
        });
        stdout.WriteLine($"wrote {result.Output}: {result.Modules} modules with {(to == LoraNaming.Kohya ? "kohya" : "peft")} names");
        return 0;
    }

    static int BakeBlocks(string[] argv, TextWriter stdout)
    {
        var a = new Args("lora bake-blocks", argv, flags: ["force", "quiet"], options: ["blocks", "elements", "model", "family", "out"]);
        if (a.Positionals.Count != 1) throw new UserErrorException("'lora bake-blocks' takes one LoRA file");
        var blocks = LoraBlockWeights.Parse(a.Require("blocks"), a.Get("elements"));
        var result = LoraBakeBlocks.Run(new BakeBlocksRequest(a.Positionals[0], blocks, a.Require("out"))
        {
            Model = a.Get("model"), Family = a.Get("family") is { } f ? ToolTargets.ParseFamily(f) : null, Force = a.Flag("force"),
        });
        stdout.WriteLine($"wrote {result.Output}: {result.Scaled} modules scaled, {result.Dropped} left out (weight 0), {result.Kept} unchanged");
        return 0;
    }
}
