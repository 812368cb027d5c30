using LoraCraft.Benchmarks;
using LoraCraft.Models;

namespace LoraCraft.Cli.Commands;

/// <summary>The LoRA part of `bench` (apply, switch, step time with a LoRA).</summary>
static class BenchLora
{
    public static Func<StableDiffusionModel, BenchResult, BenchResult>? Part(BenchOptions options, TextWriter log) => null;
}
