using System.Diagnostics;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Pipelines;
using LoraCraft.Training;
using static TorchSharp.torch;

namespace LoraCraft.Benchmarks;

/// <summary>What `loracraft bench --train` reports.</summary>
public sealed record TrainingBenchResult
{
    public required string Family { get; init; }
    public required string DType { get; init; }
    public required int Width { get; init; }
    public required int Height { get; init; }
    public required int Rank { get; init; }
    public required int Steps { get; init; }
    public required int Threads { get; init; }
    public double FirstStepSeconds { get; init; }
    /// <summary>Mean over the steps after the first.</summary>
    public double StepSeconds { get; init; }
    /// <summary>Peak resident memory through load, latent caching and training.</summary>
    public double PeakRssMb { get; init; }
    /// <summary>One no-grad UNet pass on a batch of 2 (a cfg sampling step) at the same size and dtype, for comparison (mean of before and after training).</summary>
    public double SamplingUNetPassSeconds { get; init; }
}

/// <summary>
/// A few LoRA training steps on the full-size random checkpoint (one image, latents cached,
/// gradient checkpointing), then one sampling step's UNet pass at the same size, so the two can be compared.
/// </summary>
public static class TrainingBenchmark
{
    public static TrainingBenchResult Run(BenchOptions o, bool gradientCheckpointing, TextWriter log)
    {
        var (modelPath, tokenizer) = Benchmark.Prepare(o, log);
        string? config = o.Size == RandomModelSize.Tiny ? RandomCheckpoint.ConfigDirFor(modelPath) : null;
        int width = o.Width ?? (o.Family == "sdxl" ? 1024 : 512), height = o.Height ?? width;
        var root = Path.Combine(o.CacheDir, "train-bench");
        var images = Path.Combine(root, "data", "1_bench");
        Directory.CreateDirectory(images);
        var image = Path.Combine(images, $"image-{width}x{height}.png");
        if (!File.Exists(image))
        {
            using var g = new Generator(1);
            using var pixels = rand([1, 3, height, width], generator: g);
            ImageFiles.SavePng(image, pixels);
        }
        foreach (var other in Directory.GetFiles(images, "image-*.png").Where(p => p != image)) File.Delete(other);

        var stepTimes = new List<double>();
        var clock = Stopwatch.StartNew();
        var progress = new Progress(e =>
        {
            if (e is TrainingPhase { Name: "train" }) clock.Restart();
            if (e is TrainingStep s)
            {
                stepTimes.Add(clock.Elapsed.TotalSeconds);
                clock.Restart();
                log.WriteLine(FormattableString.Invariant($"step {s.Step}/{s.TotalSteps}: {stepTimes[^1]:F2} s, loss {s.Loss:F4}"));
            }
        });
        var options = new TrainingOptions
        {
            ModelPath = modelPath, TokenizerDir = tokenizer, ConfigDir = config,
            TrainDataDir = Path.Combine(root, "data"), OutputDir = Path.Combine(root, "out"), OutputName = "bench",
            Width = width, Height = height, MaxTrainSteps = o.Steps, CacheLatents = true, Seed = 1,
            MixedPrecision = o.DType == ScalarType.BFloat16 ? "bf16" : "no", GradientCheckpointing = gradientCheckpointing,
            Network = new LoraNetworkOptions { Dim = o.LoraRank, Alpha = o.LoraRank }, ChartEverySteps = 1000,
        };
        // the comparison, measured before and after training (a shared machine's load drifts): one cfg
        // sampling step's UNet pass (batch 2, no grad) on the same model
        double before = SamplingPass(modelPath, tokenizer, config, o.DType, width, height);
        log.WriteLine(FormattableString.Invariant($"sampling UNet pass before training: {before:F2} s"));
        log.WriteLine($"training {o.Steps} steps at {width}x{height}, rank {o.LoraRank}, {Runtime.Compute.Name(o.DType)}{(gradientCheckpointing ? ", gradient checkpointing" : "")}...");
        LoraTrainer.Run(options, progress);
        double peak = ProcessMemory.PeakRssMb();
        double after = SamplingPass(modelPath, tokenizer, config, o.DType, width, height);
        log.WriteLine(FormattableString.Invariant($"sampling UNet pass after training: {after:F2} s"));
        double pass = (before + after) / 2;
        return new TrainingBenchResult
        {
            Family = o.Family, DType = Runtime.Compute.Name(o.DType), Width = width, Height = height, Rank = o.LoraRank, Steps = o.Steps,
            Threads = get_num_threads(), FirstStepSeconds = stepTimes.FirstOrDefault(),
            StepSeconds = stepTimes.Count > 1 ? stepTimes.Skip(1).Average() : stepTimes.FirstOrDefault(),
            PeakRssMb = peak, SamplingUNetPassSeconds = pass,
        };
    }

    static double SamplingPass(string modelPath, string tokenizer, string? config, ScalarType dtype, int width, int height)
    {
        using var model = CheckpointLoader.Load(modelPath, new LoadOptions { TokenizerDir = tokenizer, ConfigDir = config, DType = dtype });
        using var noGrad = no_grad();
        using var x = randn([2, 4, height / 8, width / 8]);
        using var ctx = randn([2, 77, model.UNet.Config.ContextDim]);
        using var t = tensor(new float[] { 500, 500 });
        using var y = model.UNet.Config.AdmInChannels > 0 ? randn([2, model.UNet.Config.AdmInChannels]) : null;
        using (model.UNet.Forward(x, t, ctx, y)) { }
        var sw = Stopwatch.StartNew();
        using (model.UNet.Forward(x, t, ctx, y)) { }
        double seconds = sw.Elapsed.TotalSeconds;
        Runtime.Compute.ReleaseFreedMemory();
        return seconds;
    }

    sealed class Progress(Action<TrainingEvent> action) : IProgress<TrainingEvent>
    {
        public void Report(TrainingEvent value) => action(value);
    }
}
