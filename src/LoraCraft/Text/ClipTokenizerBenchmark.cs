using System.Diagnostics;

namespace LoraCraft.Text;

/// <summary>Prompts per second on one thread (median pass), cold with an empty BPE cache and warm with a filled one.</summary>
public sealed record TokenizerBenchmarkResult(int Prompts, int DistinctWords, double ColdPromptsPerSecond, double WarmPromptsPerSecond, int ColdPasses, int WarmPasses);

public static class ClipTokenizerBenchmark
{
    /// <summary>
    /// Spends about half of <paramref name="duration"/> on cold passes (cache cleared before each)
    /// and half on warm passes over the same prompts. One untimed pass first gets JIT compilation
    /// out of the measurement. Medians, so that a GC pause or a busy neighbour does not decide.
    /// </summary>
    public static TokenizerBenchmarkResult Run(ClipTokenizer tokenizer, IEnumerable<string> prompts, TimeSpan duration)
    {
        var list = prompts.ToList();
        if (list.Count == 0) throw new ArgumentException("no prompts", nameof(prompts));
        tokenizer.ClearCache();
        Pass(tokenizer, list);
        int distinct = tokenizer.CachedWordCount;

        var (cold, coldPasses) = MedianPass(tokenizer, list, duration / 2, clearCache: true);
        var (warm, warmPasses) = MedianPass(tokenizer, list, duration / 2, clearCache: false);
        return new TokenizerBenchmarkResult(list.Count, distinct, list.Count / cold, list.Count / warm, coldPasses, warmPasses);
    }

    static (double Seconds, int Passes) MedianPass(ClipTokenizer tokenizer, List<string> prompts, TimeSpan budget, bool clearCache)
    {
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        do
        {
            if (clearCache) tokenizer.ClearCache();
            var sw = Stopwatch.StartNew();
            Pass(tokenizer, prompts);
            times.Add(sw.Elapsed.TotalSeconds);
        } while (total.Elapsed < budget);
        times.Sort();
        return (times[times.Count / 2], times.Count);
    }

    static void Pass(ClipTokenizer tokenizer, List<string> prompts)
    {
        foreach (var p in prompts) tokenizer.EncodeForModel(p);
    }
}
