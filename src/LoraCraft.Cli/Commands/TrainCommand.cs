using System.Globalization;
using LoraCraft.Models;
using LoraCraft.Training;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// `loracraft train`: kohya's `train_network.py` command line (its flag names, with dashes or
/// underscores) mapped onto <see cref="TrainingOptions"/>; the library does the rest.
/// </summary>
public static class TrainCommand
{
    public static readonly string[] Flags =
    [
        "quiet", "v-parameterization", "enable-bucket", "bucket-no-upscale", "shuffle-caption", "flip-aug", "cache-latents",
        "cache-latents-to-disk", "save-state", "no-metadata", "network-train-unet-only", "network-train-text-encoder-only", "use-8bit-adam",
        "gradient-checkpointing", "sample-at-first",
        // kohya flags that change nothing here (the family is read from the checkpoint, attention is always SDPA,
        // data loading is in-process)
        "v2", "xformers", "sdpa", "mem-eff-attn", "persistent-data-loader-workers", "lowram", "highvram",
    ];

    static readonly string[] IgnoredFlags = ["v2", "xformers", "sdpa", "mem-eff-attn", "persistent-data-loader-workers", "lowram", "highvram"];
    static readonly string[] IgnoredOptions = ["max-data-loader-n-workers", "logging-dir", "log-with", "log-prefix", "log-tracker-name"];

    public static readonly string[] Options =
    [
        "model", "config", "tokenizer", "device", "threads",
        "train-data-dir", "reg-data-dir", "dataset-config", "repeats", "resolution", "train-batch-size", "min-bucket-reso", "max-bucket-reso",
        "bucket-reso-steps", "caption-extension", "keep-tokens", "keep-tokens-separator", "caption-dropout-rate", "caption-tag-dropout-rate",
        "output-dir", "output-name", "save-precision", "save-every-n-epochs", "save-every-n-steps", "save-last-n-epochs", "resume",
        "training-comment", "save-model-as",
        "network-module", "network-dim", "network-alpha", "network-dropout", "conv-dim", "conv-alpha",
        "learning-rate", "unet-lr", "text-encoder-lr", "optimizer-type", "lr-scheduler", "lr-warmup-steps", "lr-scheduler-num-cycles",
        "lr-scheduler-power", "max-train-steps", "max-train-epochs", "gradient-accumulation-steps", "max-grad-norm", "seed", "mixed-precision",
        "noise-offset", "loss-type", "huber-schedule", "huber-c", "huber-scale", "min-snr-gamma", "prior-loss-weight", "clip-skip", "max-token-length",
        "sample-prompts", "sample-every-n-steps", "sample-every-n-epochs", "sample-sampler", "chart-every",
        .. IgnoredOptions,
    ];

    /// <summary>Options that take several values, as kohya's nargs='*' ones do.</summary>
    static readonly string[] ListOptions = ["network-args", "optimizer-args"];

    public static int Run(string[] argv, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        var (tokens, lists) = Normalize(argv);
        var a = new Args("train", tokens, Flags, Options);
        if (a.Positionals.Count > 0) throw new UserErrorException($"unexpected argument '{a.Positionals[0]}' for 'train'");
        bool quiet = a.Flag("quiet");
        var options = ToOptions(a, lists, stderr);
        int threads = Runtime.Compute.SetThreads(a.Get("threads") is null ? null : a.GetInt("threads", 0));
        var bar = new TrainProgress(stderr, quiet);
        if (!quiet) stderr.WriteLine($"training with {threads} threads");
        TrainingResult result;
        try { result = LoraTrainer.Run(options, bar, cancel); }
        finally { bar.Finish(); }
        if (result.Cancelled)
        {
            stderr.WriteLine($"stopped at step {result.Steps}: state saved in {result.StateDir}");
            stderr.WriteLine($"continue with the same command plus --resume \"{result.StateDir}\"");
            return 130;
        }
        stdout.WriteLine(result.LoraPath);
        return 0;
    }

    /// <summary>kohya spellings to ours: `--foo_bar` → `--foo-bar`, `--pretrained_model_name_or_path` → `--model`; nargs lists pulled out.</summary>
    internal static (List<string> Tokens, Dictionary<string, List<string>> Lists) Normalize(string[] argv)
    {
        var tokens = new List<string>();
        var lists = ListOptions.ToDictionary(k => k, _ => new List<string>());
        for (int i = 0; i < argv.Length; i++)
        {
            var t = argv[i];
            if (!t.StartsWith("--", StringComparison.Ordinal) || t == "--") { tokens.Add(t); continue; }
            int eq = t.IndexOf('=');
            string name = (eq >= 0 ? t[2..eq] : t[2..]).Replace('_', '-');
            if (name is "pretrained-model-name-or-path") name = "model";
            if (lists.TryGetValue(name, out var list))
            {
                if (eq >= 0) list.Add(t[(eq + 1)..]);
                while (i + 1 < argv.Length && !argv[i + 1].StartsWith("--", StringComparison.Ordinal)) list.Add(argv[++i]);
                continue;
            }
            tokens.Add("--" + name + (eq >= 0 ? t[eq..] : ""));
        }
        return (tokens, lists);
    }

    static TrainingOptions ToOptions(Args a, Dictionary<string, List<string>> lists, TextWriter stderr)
    {
        var ignored = IgnoredFlags.Where(a.Flag).Select(f => "--" + f).Concat(IgnoredOptions.Where(o => a.Get(o) is not null).Select(o => "--" + o)).ToList();
        if (ignored.Count > 0) stderr.WriteLine($"note: ignored (no effect here): {string.Join(" ", ignored)}");
        if (a.Get("network-module") is { } module && module != "networks.lora")
            throw new UserErrorException($"--network-module: only networks.lora is built in (LoRA, with --conv-dim for LoCon), got '{module}'");
        if (a.Get("save-model-as") is { } saveAs && saveAs != "safetensors")
            throw new UserErrorException($"--save-model-as: only safetensors is written, got '{saveAs}'");
        if (a.Flag("network-train-unet-only") && a.Flag("network-train-text-encoder-only"))
            throw new UserErrorException("--network-train-unet-only and --network-train-text-encoder-only exclude each other");

        var net = ParseNetworkArgs(lists["network-args"]);
        int dim = a.GetInt("network-dim", 4);
        var network = new LoraNetworkOptions
        {
            Dim = dim,
            Alpha = a.GetDouble("network-alpha", 1),
            ConvDim = a.Get("conv-dim") is not null ? a.GetInt("conv-dim", 0) : net.ConvDim,
            ConvAlpha = a.Get("conv-alpha") is not null ? a.GetDouble("conv-alpha", 1) : net.ConvAlpha ?? 1,
            Dropout = a.GetDouble("network-dropout", 0),
            RankDropout = net.RankDropout,
            ModuleDropout = net.ModuleDropout,
            TrainUNet = !a.Flag("network-train-text-encoder-only"),
            TrainTextEncoder = !a.Flag("network-train-unet-only"),
        };
        var optimizer = (a.Get("optimizer-type") ?? (a.Flag("use-8bit-adam") ? "AdamW8bit" : "AdamW")).ToLowerInvariant() switch
        {
            "adamw" or "" => OptimizerKind.AdamW,
            "adamw8bit" or "bitsandbytes.optim.adamw8bit" => OptimizerKind.AdamW8bit,
            var other => throw new UserErrorException($"--optimizer-type: {other} is not built in (AdamW and AdamW8bit are)"),
        };
        var (w, h) = Resolution(a.Get("resolution"));
        var loss = new TrainingLossOptions
        {
            Type = (a.Get("loss-type") ?? "l2") switch
            {
                "l2" => LossType.L2, "l1" => LossType.L1, "huber" => LossType.Huber, "smooth_l1" or "smooth-l1" => LossType.SmoothL1,
                var l => throw new UserErrorException($"--loss-type must be l2, l1, huber or smooth_l1, got '{l}'"),
            },
            MinSnrGamma = a.Get("min-snr-gamma") is null ? null : a.GetDouble("min-snr-gamma", 0),
            HuberSchedule = a.Get("huber-schedule") ?? "snr",
            HuberC = a.GetDouble("huber-c", 0.1),
            HuberScale = a.GetDouble("huber-scale", 1),
        };
        return new TrainingOptions
        {
            ModelPath = a.Require("model"),
            ConfigDir = a.Get("config"),
            TokenizerDir = a.Get("tokenizer"),
            Prediction = a.Flag("v-parameterization") ? Prediction.V : null,
            Device = a.Get("device") ?? "cpu",
            TrainDataDir = a.Get("train-data-dir"),
            RegDataDir = a.Get("reg-data-dir"),
            DatasetConfig = a.Get("dataset-config"),
            Repeats = a.Get("repeats") is null ? null : a.GetInt("repeats", 1),
            Width = w,
            Height = h,
            BatchSize = a.GetInt("train-batch-size", 1),
            EnableBucket = a.Flag("enable-bucket"),
            MinBucketReso = a.GetInt("min-bucket-reso", 256),
            MaxBucketReso = a.GetInt("max-bucket-reso", 1024),
            BucketResoSteps = a.GetInt("bucket-reso-steps", 64),
            BucketNoUpscale = a.Flag("bucket-no-upscale"),
            CaptionExtension = a.Get("caption-extension"),
            ShuffleCaption = a.Flag("shuffle-caption"),
            KeepTokens = a.GetInt("keep-tokens", 0),
            KeepTokensSeparator = a.Get("keep-tokens-separator"),
            CaptionDropoutRate = a.GetDouble("caption-dropout-rate", 0),
            CaptionTagDropoutRate = a.GetDouble("caption-tag-dropout-rate", 0),
            FlipAug = a.Flag("flip-aug"),
            CacheLatents = a.Flag("cache-latents"),
            CacheLatentsToDisk = a.Flag("cache-latents-to-disk"),
            OutputDir = a.Require("output-dir"),
            OutputName = a.Get("output-name") ?? "last",
            SavePrecision = (a.Get("save-precision") ?? "float") switch { "fp32" or "float32" => "float", var p => p },
            SaveEveryNEpochs = NullableInt(a, "save-every-n-epochs"),
            SaveEveryNSteps = NullableInt(a, "save-every-n-steps"),
            SaveLastNEpochs = NullableInt(a, "save-last-n-epochs"),
            SaveState = a.Flag("save-state"),
            Resume = a.Get("resume"),
            TrainingComment = a.Get("training-comment"),
            NoMetadata = a.Flag("no-metadata"),
            Network = network,
            LearningRate = a.GetDouble("learning-rate", 1e-4),
            UNetLearningRate = a.Get("unet-lr") is null ? null : a.GetDouble("unet-lr", 0),
            TextEncoderLearningRate = a.Get("text-encoder-lr") is null ? null : a.GetDouble("text-encoder-lr", 0),
            Optimizer = optimizer,
            OptimizerSettings = ParseOptimizerArgs(lists["optimizer-args"]),
            LrScheduler = a.Get("lr-scheduler") ?? "constant",
            LrWarmupSteps = a.GetDouble("lr-warmup-steps", 0),
            LrSchedulerNumCycles = a.GetInt("lr-scheduler-num-cycles", 1),
            LrSchedulerPower = a.GetDouble("lr-scheduler-power", 1),
            MaxTrainSteps = a.GetInt("max-train-steps", 1600),
            MaxTrainEpochs = NullableInt(a, "max-train-epochs"),
            GradientAccumulationSteps = a.GetInt("gradient-accumulation-steps", 1),
            MaxGradNorm = a.GetDouble("max-grad-norm", 1),
            Seed = a.GetLong("seed"),
            MixedPrecision = a.Get("mixed-precision") ?? "no",
            GradientCheckpointing = a.Flag("gradient-checkpointing"),
            NoiseOffset = a.GetDouble("noise-offset", 0),
            Loss = loss,
            PriorLossWeight = a.GetDouble("prior-loss-weight", 1),
            ClipSkip = a.GetInt("clip-skip", 1),
            MaxTokenLength = a.GetInt("max-token-length", 75),
            SamplePrompts = a.Get("sample-prompts"),
            SampleEveryNSteps = NullableInt(a, "sample-every-n-steps"),
            SampleEveryNEpochs = NullableInt(a, "sample-every-n-epochs"),
            SampleAtFirst = a.Flag("sample-at-first"),
            SampleSampler = a.Get("sample-sampler") ?? "ddim",
            ChartEverySteps = a.GetInt("chart-every", 10),
        };
    }

    static int? NullableInt(Args a, string name) => a.Get(name) is null ? null : a.GetInt(name, 0);

    /// <summary>"512" or "512,768" (width, height), as kohya's --resolution.</summary>
    static (int, int) Resolution(string? text)
    {
        if (text is null) return (512, 512);
        var parts = text.Split(',', 'x');
        if (parts.Length is 1 or 2 && parts.All(p => int.TryParse(p.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out _)))
        {
            int w = int.Parse(parts[0].Trim(), CultureInfo.InvariantCulture);
            return (w, parts.Length == 2 ? int.Parse(parts[1].Trim(), CultureInfo.InvariantCulture) : w);
        }
        throw new UserErrorException($"--resolution must be SIZE or WIDTH,HEIGHT, got '{text}'");
    }

    sealed record NetworkArgs(int? ConvDim, double? ConvAlpha, double RankDropout, double ModuleDropout);

    /// <summary>kohya's `--network_args "conv_dim=4" "conv_alpha=1" "rank_dropout=0.1" "module_dropout=0.1"`.</summary>
    static NetworkArgs ParseNetworkArgs(List<string> args)
    {
        var result = new NetworkArgs(null, null, 0, 0);
        foreach (var (key, value) in KeyValues(args, "--network-args"))
            result = key switch
            {
                "conv_dim" => result with { ConvDim = (int)Number(key, value) },
                "conv_alpha" => result with { ConvAlpha = Number(key, value) },
                "rank_dropout" => result with { RankDropout = Number(key, value) },
                "module_dropout" => result with { ModuleDropout = Number(key, value) },
                _ => throw new UserErrorException($"--network-args: '{key}' is not supported (conv_dim, conv_alpha, rank_dropout, module_dropout are)"),
            };
        return result;
    }

    /// <summary>kohya's `--optimizer_args "weight_decay=0.1" "betas=0.9,0.99" "eps=1e-8"`.</summary>
    static AdamWSettings ParseOptimizerArgs(List<string> args)
    {
        var s = new AdamWSettings();
        foreach (var (key, value) in KeyValues(args, "--optimizer-args"))
            s = key switch
            {
                "weight_decay" => s with { WeightDecay = Number(key, value) },
                "eps" => s with { Eps = Number(key, value) },
                "betas" => value.Trim('(', ')', '[', ']').Split(',') is [var b1, var b2]
                    ? s with { Beta1 = Number(key, b1), Beta2 = Number(key, b2) }
                    : throw new UserErrorException($"--optimizer-args: betas needs two values, got '{value}'"),
                _ => throw new UserErrorException($"--optimizer-args: '{key}' is not supported (weight_decay, betas, eps are)"),
            };
        return s;
    }

    static IEnumerable<(string, string)> KeyValues(List<string> args, string option)
    {
        foreach (var arg in args.SelectMany(x => x.Split(' ', StringSplitOptions.RemoveEmptyEntries)))
        {
            int eq = arg.IndexOf('=');
            if (eq <= 0) throw new UserErrorException($"{option}: expected key=value, got '{arg}'");
            yield return (arg[..eq].Trim(), arg[(eq + 1)..].Trim());
        }
    }

    static double Number(string key, string value) =>
        double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : throw new UserErrorException($"'{key}' must be a number, got '{value}'");
}
