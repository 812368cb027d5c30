using System.Globalization;
using System.Text.Json;
using LoraCraft.Benchmarks;
using LoraCraft.Runtime;

namespace LoraCraft.Cli.Commands;

/// <summary>`loracraft bench`: load, text, per-step, decode and LoRA timings on a full-size random model.</summary>
public static class BenchCommand
{
    public static int Run(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args("bench", argv, ["json", "quiet", "train", "no-gradient-checkpointing"], ["family", "width", "height", "steps", "dtype", "lora-rank", "threads", "cache", "size"]);
        bool train = a.Flag("train");
        var options = new BenchOptions
        {
            Family = a.Get("family") ?? "sd15",
            Width = a.Get("width") is null ? null : a.GetInt("width", 0),
            Height = a.Get("height") is null ? null : a.GetInt("height", 0),
            Steps = a.GetInt("steps", train ? 3 : 4),
            DType = Compute.ParseDType(a.Get("dtype")),
            LoraRank = a.GetInt("lora-rank", train ? 16 : 32),
            CacheDir = a.Get("cache") ?? Path.Combine(Paths.CacheRoot, "bench"),
            Size = a.Get("size") switch
            {
                null or "full" => Models.Random.RandomModelSize.Full,
                "tiny" => Models.Random.RandomModelSize.Tiny,
                var s => throw new UserErrorException($"--size must be full or tiny, got '{s}'"),
            },
        };
        Benchmark.Kind(options.Family);
        if (options.Steps < 1) throw new UserErrorException("--steps must be 1 or more");
        Compute.SetThreads(a.Get("threads") is null ? null : a.GetInt("threads", 0));
        var log = a.Flag("quiet") ? TextWriter.Null : stderr;
        if (train) return Train(options, !a.Flag("no-gradient-checkpointing"), a.Flag("json"), stdout, log);
        var r = Benchmark.Run(options, log);
        if (a.Flag("json"))
        {
            stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["family"] = r.Family, ["dtype"] = r.DType, ["width"] = r.Width, ["height"] = r.Height, ["steps"] = r.Steps, ["threads"] = r.Threads,
                ["load_s"] = Round(r.LoadSeconds), ["text_s"] = Round(r.TextSeconds), ["step_s"] = Round(r.StepSeconds), ["first_step_s"] = Round(r.FirstStepSeconds), ["step_mean_s"] = Round(r.StepMeanSeconds),
                ["step_gflop"] = Math.Round(r.StepGflop, 1), ["gemm_peak_gflops"] = Math.Round(r.GemmPeakGflops, 1), ["step_peak_fraction"] = Round(r.StepPeakFraction),
                ["vae_decode_s"] = Round(r.VaeDecodeSeconds), ["total_s"] = Round(r.TotalSeconds), ["peak_rss_mb"] = Math.Round(r.PeakRssMb), ["peak_rss_with_lora_mb"] = Math.Round(r.PeakRssWithLoraMb),
                ["lora_apply_s"] = Round(r.LoraApplySeconds), ["lora_switch_s"] = Round(r.LoraSwitchSeconds),
                ["lora_reapply_s"] = Round(r.LoraReapplySeconds), ["step_with_lora_s"] = Round(r.StepWithLoraSeconds),
                ["step_with_lora_bypass_s"] = Round(r.StepWithLoraBypassSeconds), ["lora_remerge_s"] = Round(r.LoraRemergeSeconds),
                ["malloc_hugepages"] = r.MallocHugePages,
            }));
        }
        else
        {
            var inv = CultureInfo.InvariantCulture;
            void Row(string k, string v) => stdout.WriteLine(string.Create(inv, $"{k,-22}{v}"));
            Row("model", $"random {r.Family} ({(options.Size == Models.Random.RandomModelSize.Full ? "full size" : "tiny")}), {r.DType}, {r.Threads} threads");
            Row("image", $"{r.Width}x{r.Height}, {r.Steps} euler steps, cfg 7");
            Row("load", $"{r.LoadSeconds:F2} s");
            Row("text conditioning", $"{r.TextSeconds:F2} s");
            Row("per step", $"{r.StepSeconds:F2} s (median after the first step, which took {r.FirstStepSeconds:F2} s)");
            Row("step arithmetic", $"{r.StepGflop:F0} GFLOP, {r.StepGflop / r.StepSeconds:F0} GFLOP/s = {r.StepPeakFraction:P0} of this machine's {r.DType} GEMM peak ({r.GemmPeakGflops:F0} GFLOP/s)");
            Row("VAE decode", $"{r.VaeDecodeSeconds:F2} s");
            Row("LoRA apply", $"{r.LoraApplySeconds:F3} s (rank {options.LoraRank})");
            Row("LoRA switch", $"{r.LoraSwitchSeconds:F3} s");
            Row("LoRA same set again", $"{r.LoraReapplySeconds:F3} s");
            Row("per step with LoRA", $"{r.StepWithLoraSeconds:F2} s merged, {r.StepWithLoraBypassSeconds:F2} s in bypass");
            Row("LoRA re-merge", $"{r.LoraRemergeSeconds:F3} s (per step, for a merged schedule)");
            Row("total", $"{r.TotalSeconds:F1} s");
            Row("peak RSS", $"{r.PeakRssMb:F0} MiB (with the LoRA part: {r.PeakRssWithLoraMb:F0} MiB)");
            Row("C heap", r.MallocHugePages ? "transparent huge pages (GLIBC_TUNABLES)" : "4 KiB pages: start through ./loracraft or set GLIBC_TUNABLES=glibc.malloc.hugetlb=1");
        }
        return 0;
    }

    /// <summary>`bench --train`: LoRA training steps on the full-size random model vs one sampling step's UNet pass.</summary>
    static int Train(BenchOptions options, bool checkpointing, bool json, TextWriter stdout, TextWriter log)
    {
        if (options.LoraRank < 1) throw new UserErrorException("--lora-rank must be 1 or more for --train");
        var r = TrainingBenchmark.Run(options, checkpointing, log);
        if (json)
        {
            stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["family"] = r.Family, ["dtype"] = r.DType, ["width"] = r.Width, ["height"] = r.Height, ["rank"] = r.Rank, ["steps"] = r.Steps,
                ["threads"] = r.Threads, ["gradient_checkpointing"] = checkpointing, ["first_step_s"] = Round(r.FirstStepSeconds),
                ["step_s"] = Round(r.StepSeconds), ["sampling_unet_pass_s"] = Round(r.SamplingUNetPassSeconds), ["peak_rss_mb"] = Math.Round(r.PeakRssMb),
            }));
            return 0;
        }
        var inv = CultureInfo.InvariantCulture;
        void Row(string k, string v) => stdout.WriteLine(string.Create(inv, $"{k,-26}{v}"));
        Row("model", $"random {r.Family} ({(options.Size == Models.Random.RandomModelSize.Full ? "full size" : "tiny")}), {r.DType}, {r.Threads} threads");
        Row("training", $"{r.Width}x{r.Height}, batch 1, rank {r.Rank}{(checkpointing ? ", gradient checkpointing" : "")}, {r.Steps} steps");
        Row("first step", $"{r.FirstStepSeconds:F2} s");
        Row("per step (after the first)", $"{r.StepSeconds:F2} s");
        Row("sampling UNet pass (cfg)", $"{r.SamplingUNetPassSeconds:F2} s (training step = {r.StepSeconds / r.SamplingUNetPassSeconds:F1}x)");
        Row("peak RSS", $"{r.PeakRssMb:F0} MiB");
        return 0;
    }

    static double Round(double v) => Math.Round(v, 4);
}
