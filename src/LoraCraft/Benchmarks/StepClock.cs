using System.Diagnostics;
using LoraCraft.Sampling;

namespace LoraCraft.Benchmarks;

/// <summary>
/// Times each sampling step as the sampler reports it (synchronously, unlike
/// <see cref="Progress{T}"/>): the first step is the warm-up (primitive creation, first-touch
/// allocations); the figure `bench` reports is the median of the steps after it.
/// </summary>
sealed class StepClock : IProgress<SamplerStep>
{
    readonly Stopwatch _clock = Stopwatch.StartNew();
    readonly List<double> _ends = [];

    public void Report(SamplerStep value) => _ends.Add(_clock.Elapsed.TotalSeconds);

    /// <summary>Durations of the steps after the first (empty with fewer than two steps).</summary>
    public IReadOnlyList<double> StepsAfterFirst() => [.. _ends.Skip(1).Select((end, i) => end - _ends[i])];

    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.OrderBy(v => v).ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
