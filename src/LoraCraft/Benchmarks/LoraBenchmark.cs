using System.Diagnostics;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Pipelines;

namespace LoraCraft.Benchmarks;

/// <summary>
/// The LoRA part of `bench`: a random rank-R LoRA over every attention projection (two of them,
/// cached beside the model) — time to apply, to switch to the other, to re-apply the same set,
/// and the step time while applied.
/// </summary>
static class LoraBenchmark
{
    public static BenchResult Run(StableDiffusionModel model, BenchResult r, BenchOptions options, TextWriter log)
    {
        if (options.LoraRank <= 0) return r;
        var targets = new LoraTargets(model);
        LoraPlan PlanFor(ulong seed)
        {
            var path = Path.Combine(options.CacheDir, $"random-{options.Family}-lora-r{options.LoraRank}-{seed}.safetensors");
            if (!File.Exists(path)) RandomLora.Make(path, targets, new RandomLoraOptions(Rank: options.LoraRank, Seed: seed));
            return LoraPlan.Create(LoraFile.Load(path), targets);
        }
        var a = PlanFor(1);
        var b = PlanFor(2);
        using var patcher = new LoraPatcher();
        var clock = Stopwatch.StartNew();
        patcher.Apply([new LoraApplication(a, 1, 1)]);
        double apply = clock.Elapsed.TotalSeconds;
        clock.Restart();
        patcher.Apply([new LoraApplication(b, 1, 1)]);
        double switchTime = clock.Elapsed.TotalSeconds;
        clock.Restart();
        patcher.Apply([new LoraApplication(b, 1, 1)]);
        double reapply = clock.Elapsed.TotalSeconds;
        log.WriteLine($"LoRA rank {options.LoraRank}: apply {apply:F3} s, switch {switchTime:F3} s; sampling with it...");
        int size = model.Family.DefaultSize();
        var request = new GenerationRequest
        {
            Prompt = "a photo of a cat sitting on a wooden table, soft light", Negative = "low quality, blurry",
            Seed = 1, Steps = options.Steps, Cfg = 7, Sampler = "euler", Scheduler = "normal",
            Width = options.Width ?? size, Height = options.Height ?? size,
        };
        double merged;
        using (var result = StableDiffusionPipeline.Generate(model, request)) merged = result.Timings.SamplingSeconds / options.Steps;
        // what a per-step schedule costs in each mode: re-merging at a new strength, or a bypass step
        clock.Restart();
        patcher.Apply([new LoraApplication(b, 0.9, 1)]);
        double remerge = clock.Elapsed.TotalSeconds;
        patcher.Apply([new LoraApplication(b, 1, 1) { Bypass = true }]);
        log.WriteLine($"LoRA re-merge at another strength {remerge:F3} s; sampling with it in bypass mode...");
        double bypass;
        using (var result = StableDiffusionPipeline.Generate(model, request)) bypass = result.Timings.SamplingSeconds / options.Steps;
        patcher.Apply([]);
        a.File.Dispose();
        b.File.Dispose();
        return r with
        {
            LoraApplySeconds = apply, LoraSwitchSeconds = switchTime, LoraReapplySeconds = reapply,
            StepWithLoraSeconds = merged, StepWithLoraBypassSeconds = bypass, LoraRemergeSeconds = remerge,
        };
    }
}
