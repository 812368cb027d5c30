using System.Diagnostics;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Pipelines;
using LoraCraft.Sampling;
using static TorchSharp.torch;

namespace LoraCraft.Benchmarks;

public sealed record BenchOptions
{
    public string Family { get; init; } = "sd15";
    public int? Width { get; init; }
    public int? Height { get; init; }
    public int Steps { get; init; } = 4;
    public ScalarType DType { get; init; } = ScalarType.BFloat16;
    public int LoraRank { get; init; } = 32;
    /// <summary>Full size is what the figures mean; tiny exists so the command itself can be tested quickly.</summary>
    public RandomModelSize Size { get; init; } = RandomModelSize.Full;
    public required string CacheDir { get; init; }
}

/// <summary>What `loracraft bench` reports; the JSON field names are part of the CLI contract.</summary>
public sealed record BenchResult
{
    public required string Family { get; init; }
    public required string DType { get; init; }
    public required int Width { get; init; }
    public required int Height { get; init; }
    public required int Steps { get; init; }
    public required int Threads { get; init; }
    public double LoadSeconds { get; init; }
    public double TextSeconds { get; init; }
    /// <summary>Median of the steps after the first (the warm-up); the mean when there is one step.</summary>
    public double StepSeconds { get; init; }
    public double FirstStepSeconds { get; init; }
    /// <summary>Sampling time over the steps, the first included (what this field meant before the median).</summary>
    public double StepMeanSeconds { get; init; }
    /// <summary>UNet multiply-add work per step (2 FLOPs each; convolutions, linears, attention products).</summary>
    public double StepGflop { get; init; }
    /// <summary>This machine's best large-matrix-multiply rate in the compute dtype (see <see cref="GemmPeak"/>).</summary>
    public double GemmPeakGflops { get; init; }
    /// <summary>A step's FLOP rate over <see cref="GemmPeakGflops"/>.</summary>
    public double StepPeakFraction { get; init; }
    public double VaeDecodeSeconds { get; init; }
    public double TotalSeconds { get; init; }
    /// <summary>Peak resident memory through load and one generation (before the LoRA part).</summary>
    public double PeakRssMb { get; init; }
    /// <summary>Peak at the end, after applying LoRAs (their originals are kept for exact restore).</summary>
    public double PeakRssWithLoraMb { get; init; }
    public double LoraApplySeconds { get; init; }
    public double LoraSwitchSeconds { get; init; }
    public double LoraReapplySeconds { get; init; }
    public double StepWithLoraSeconds { get; init; }
    /// <summary>The same LoRA beside the layers (bypass): no merge, an extra low-rank product per layer and call.</summary>
    public double StepWithLoraBypassSeconds { get; init; }
    /// <summary>Re-merging that LoRA at another strength: what a merged per-step schedule pays at every step.</summary>
    public double LoraRemergeSeconds { get; init; }
    /// <summary>Whether the C heap was asked for transparent huge pages (<see cref="Runtime.NativeHeap"/>): without them large tensors fault per 4 KiB.</summary>
    public bool MallocHugePages { get; init; }
}

/// <summary>
/// Times a full-size random checkpoint end to end (built once with the random-checkpoint maker and
/// cached), so figures can be compared across machines and versions without a real model.
/// </summary>
public static class Benchmark
{
    public static string ModelPath(BenchOptions o) =>
        Path.Combine(o.CacheDir, $"random-{o.Family}-{(o.Size == RandomModelSize.Full ? "full" : "tiny")}.safetensors");

    public static RandomModelKind Kind(string family) => family switch
    {
        "sd15" => RandomModelKind.Sd15,
        "sdxl" => RandomModelKind.Sdxl,
        _ => throw new UserErrorException($"family must be sd15 or sdxl, got '{family}'") { Field = "family" },
    };

    /// <summary>Builds (once) the random checkpoint and a byte-level tokenizer for it.</summary>
    public static (string Model, string Tokenizer) Prepare(BenchOptions o, TextWriter log)
    {
        Directory.CreateDirectory(o.CacheDir);
        var model = ModelPath(o);
        if (!File.Exists(model))
        {
            log.WriteLine($"building a random {o.Family} checkpoint in {model} (once; RANDOM weights)...");
            RandomCheckpoint.Make(model, RandomArchitecture.Of(Kind(o.Family), o.Size), 1);
        }
        var tokenizer = Path.Combine(o.CacheDir, "byte-tokenizer");
        if (!File.Exists(Path.Combine(tokenizer, "vocab.json")))
        {
            Directory.CreateDirectory(tokenizer);
            ByteLevelTokenizer.Write(tokenizer, "<|endoftext|>");
        }
        return (model, tokenizer);
    }

    public static BenchResult Run(BenchOptions o, TextWriter log)
    {
        var (modelPath, tokenizer) = Prepare(o, log);
        var total = Stopwatch.StartNew();
        var clock = Stopwatch.StartNew();
        string? config = o.Size == RandomModelSize.Tiny ? RandomCheckpoint.ConfigDirFor(modelPath) : null;
        using var model = CheckpointLoader.Load(modelPath, new LoadOptions { TokenizerDir = tokenizer, ConfigDir = config, DType = o.DType });
        double load = clock.Elapsed.TotalSeconds;
        int size = model.Family.DefaultSize();
        var request = new GenerationRequest
        {
            Prompt = "a photo of a cat sitting on a wooden table, soft light",
            Negative = "low quality, blurry",
            Seed = 1, Steps = o.Steps, Cfg = 7, Sampler = "euler", Scheduler = "normal",
            Width = o.Width ?? size, Height = o.Height ?? size,
        };
        log.WriteLine($"loaded in {load:F1} s (peak RSS so far {ProcessMemory.PeakRssMb():F0} MiB); generating {request.Width}x{request.Height}, {o.Steps} euler steps, cfg 7...");
        var steps = new StepClock();
        GenerationResult generated;
        double flops;
        using (var counter = new FlopCounter(model.UNet))
        {
            generated = StableDiffusionPipeline.Generate(model, request, new SamplerContext(steps));
            flops = counter.Flops;
        }
        using var result = generated;
        var later = steps.StepsAfterFirst();
        double mean = result.Timings.SamplingSeconds / o.Steps;
        double median = later.Count > 0 ? StepClock.Median(later) : mean;
        double peak = GemmPeak.Measure(o.DType);
        double stepFlops = flops / o.Steps;
        log.WriteLine($"step median {median:F2} s after a first step of {result.Timings.SamplingSeconds - later.Sum():F2} s; {stepFlops / 1e9:F0} GFLOP a step, " +
                      $"{stepFlops / median / 1e9:F0} GFLOP/s against a {Runtime.Compute.Name(o.DType)} GEMM peak of {peak / 1e9:F0} GFLOP/s");
        var r = new BenchResult
        {
            Family = o.Family, DType = Runtime.Compute.Name(o.DType), Width = request.Width, Height = request.Height,
            Steps = o.Steps, Threads = get_num_threads(),
            LoadSeconds = load,
            TextSeconds = result.Timings.TextSeconds,
            StepSeconds = median,
            FirstStepSeconds = result.Timings.SamplingSeconds - later.Sum(),
            StepMeanSeconds = mean,
            StepGflop = stepFlops / 1e9,
            GemmPeakGflops = peak / 1e9,
            StepPeakFraction = stepFlops / median / peak,
            VaeDecodeSeconds = result.Timings.DecodeSeconds,
            PeakRssMb = ProcessMemory.PeakRssMb(),
            MallocHugePages = Runtime.NativeHeap.HugePagesRequested(),
        };
        r = LoraBenchmark.Run(model, r, o, log);
        return r with { TotalSeconds = total.Elapsed.TotalSeconds, PeakRssWithLoraMb = ProcessMemory.PeakRssMb() };
    }
}
