using System.Diagnostics;
using LoraCraft.Sampling;

namespace LoraCraft.Cli;

/// <summary>
/// A one-line progress bar on stderr: `label [#####.....] 5/20 1.23 s/it`, redrawn in place on a
/// terminal and printed at every 25% when stderr is redirected (logs stay readable).
/// </summary>
public sealed class ProgressBar : IProgress<SamplerStep>
{
    readonly TextWriter _err;
    readonly string _label;
    readonly bool _interactive;
    readonly Stopwatch _clock = Stopwatch.StartNew();
    int _lastQuarter = -1;

    public ProgressBar(TextWriter err, string label)
    {
        _err = err;
        _label = label;
        _interactive = ReferenceEquals(err, Console.Error) && !Console.IsErrorRedirected;
    }

    public void Report(SamplerStep step) => Report(step.Index, step.Total);

    public void Report(int index, int total)
    {
        var step = new SamplerStep(index, total);
        double secondsPerStep = _clock.Elapsed.TotalSeconds / Math.Max(1, step.Index);
        const int width = 24;
        int filled = (int)Math.Round(width * (double)step.Index / step.Total);
        string line = $"{_label} [{new string('#', filled)}{new string('.', width - filled)}] {step.Index}/{step.Total} " +
                      (secondsPerStep >= 1 ? $"{secondsPerStep:F2} s/it" : $"{1 / secondsPerStep:F2} it/s");
        if (_interactive)
        {
            _err.Write("\r" + line + (step.Index == step.Total ? "\n" : ""));
        }
        else
        {
            int quarter = 4 * step.Index / step.Total;
            if (quarter != _lastQuarter || step.Index == step.Total)
            {
                _lastQuarter = quarter;
                _err.WriteLine(line);
            }
        }
    }
}
