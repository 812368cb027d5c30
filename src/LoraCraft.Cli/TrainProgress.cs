using LoraCraft.Training;

namespace LoraCraft.Cli;

/// <summary>
/// Training progress on stderr: one bar line `step 12/300 [###.....] epoch 1/3 loss 0.1234 avg 0.1402
/// lr 1.00e-04 2.31 s/it ETA 0:11:05`, redrawn in place on a terminal and printed every 5% when
/// stderr is a file; notes, saves and samples on their own lines. --quiet keeps only warnings.
/// </summary>
public sealed class TrainProgress : IProgress<TrainingEvent>
{
    readonly TextWriter _err;
    readonly bool _quiet, _interactive;
    bool _barShown;
    int _lastTwentieth = -1;

    public TrainProgress(TextWriter err, bool quiet)
    {
        _err = err;
        _quiet = quiet;
        _interactive = ReferenceEquals(err, Console.Error) && !Console.IsErrorRedirected;
    }

    public void Report(TrainingEvent e)
    {
        switch (e)
        {
            case TrainingNote n when !_quiet || n.Text.StartsWith("warning", StringComparison.Ordinal):
                Line(n.Text);
                break;
            case TrainingPhase p when !_quiet && p.Name != "scan":
                Line($"{p.Name}: {p.Detail}");
                break;
            case TrainingPlanned p when !_quiet:
                Line(Inv($"plan: {p.TotalSteps} steps, {p.Epochs} epochs of {p.BatchesPerEpoch} batches; {p.TrainImages} training uses") +
                     (p.RegImages > 0 ? Inv($", {p.RegImages} regularization uses") : "") + Inv($"; {p.Modules} LoRA modules, {p.Parameters:N0} parameters; seed {p.Seed}"));
                break;
            case TrainingPreparing p when !_quiet && _interactive:
                _err.Write($"\r{p.Phase} {p.Done}/{p.Total}" + (p.Done == p.Total ? "\n" : ""));
                break;
            case TrainingStep s when !_quiet:
                Bar(s);
                break;
            case TrainingSaved s when !_quiet:
                Line($"saved {s.Path} (step {s.Step})");
                break;
            case TrainingStateSaved s when !_quiet:
                Line($"state saved in {s.Directory}");
                break;
            case TrainingSamples s when !_quiet:
                Line($"samples at step {s.Step}: {string.Join(", ", s.Paths.Select(Path.GetFileName))}");
                break;
        }
    }

    void Bar(TrainingStep s)
    {
        const int width = 20;
        int filled = (int)Math.Round(width * (double)s.Step / s.TotalSteps);
        var eta = TimeSpan.FromSeconds(Math.Max(0, s.EtaSeconds));
        string line = Inv($"step {s.Step}/{s.TotalSteps} [{new string('#', filled)}{new string('.', width - filled)}] epoch {s.Epoch}/{s.Epochs} ") +
            Inv($"loss {s.Loss:0.0000} avg {s.AverageLoss:0.0000} lr {s.LearningRate:0.00e+00} ") +
            (s.SecondsPerStep >= 1 ? Inv($"{s.SecondsPerStep:F2} s/it") : Inv($"{1 / Math.Max(1e-9, s.SecondsPerStep):F2} it/s")) +
            Inv($" ETA {(int)eta.TotalHours}:{eta.Minutes:D2}:{eta.Seconds:D2}");
        if (_interactive)
        {
            _err.Write("\r" + line + "\u001b[K");
            _barShown = s.Step < s.TotalSteps;
            if (!_barShown) _err.WriteLine();
            return;
        }
        int twentieth = 20 * s.Step / s.TotalSteps;
        if (twentieth != _lastTwentieth || s.Step == s.TotalSteps)
        {
            _lastTwentieth = twentieth;
            _err.WriteLine(line);
        }
    }

    void Line(string text)
    {
        if (_barShown) { _err.WriteLine(); _barShown = false; }
        _err.WriteLine(text);
    }

    static string Inv(FormattableString f) => FormattableString.Invariant(f);

    public void Finish()
    {
        if (_barShown) { _err.WriteLine(); _barShown = false; }
    }
}
