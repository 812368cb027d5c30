using System.Globalization;
using System.Text;
using LoraCraft.Pipelines;

namespace LoraCraft.Training;

/// <summary>kohya's LossRecorder: the moving average over the last epoch's worth of steps.</summary>
public sealed class LossRecorder
{
    readonly List<double> _losses = new();
    double _total;

    public IReadOnlyList<double> Values => _losses;

    public void Add(int epoch, int stepInEpoch, double loss)
    {
        if (epoch == 0 || stepInEpoch >= _losses.Count) _losses.Add(loss);
        else
        {
            _total -= _losses[stepInEpoch];
            _losses[stepInEpoch] = loss;
        }
        _total += loss;
    }

    public double MovingAverage => _losses.Count == 0 ? 0 : _total / _losses.Count;

    /// <summary>Restores a saved recorder (values in order; the total is re-added in the same order).</summary>
    public void Load(IEnumerable<double> values, double total)
    {
        _losses.Clear();
        _losses.AddRange(values);
        _total = total;
    }

    public double Total => _total;
}

/// <summary>
/// The loss log in the output folder: NAME_loss.csv (step, epoch, loss, average, lr), one row per
/// step as training goes, and NAME_loss.png, a chart of both curves (ScottPlot), redrawn every few
/// steps. Both are written atomically so a viewer never sees half a file.
/// </summary>
public sealed class LossLog
{
    readonly List<(int Step, int Epoch, double Loss, double Average, double Lr)> _rows = new();
    public string CsvPath { get; }
    public string ChartPath { get; }
    readonly string _title;

    public LossLog(string outputDir, string outputName)
    {
        CsvPath = Path.Combine(outputDir, outputName + "_loss.csv");
        ChartPath = Path.Combine(outputDir, outputName + "_loss.png");
        _title = outputName;
    }

    /// <summary>Keeps the rows of an earlier run up to <paramref name="step"/> (resume).</summary>
    public void ContinueFrom(int step)
    {
        if (!File.Exists(CsvPath)) return;
        foreach (var line in File.ReadLines(CsvPath).Skip(1))
        {
            var f = line.Split(',');
            if (f.Length < 5 || !int.TryParse(f[0], CultureInfo.InvariantCulture, out int s) || s > step) continue;
            var inv = CultureInfo.InvariantCulture;
            _rows.Add((s, int.Parse(f[1], inv), double.Parse(f[2], inv), double.Parse(f[3], inv), double.Parse(f[4], inv)));
        }
    }

    public void Add(int step, int epoch, double loss, double average, double lr) => _rows.Add((step, epoch, loss, average, lr));

    public void WriteCsv()
    {
        var sb = new StringBuilder("step,epoch,loss,avg_loss,lr\n");
        foreach (var r in _rows) sb.Append(CultureInfo.InvariantCulture, $"{r.Step},{r.Epoch},{r.Loss:R},{r.Average:R},{r.Lr:R}\n");
        AtomicFile.WriteAllBytes(CsvPath, Encoding.UTF8.GetBytes(sb.ToString()));
    }

    public void DrawChart()
    {
        if (_rows.Count == 0) return;
        var plot = new ScottPlot.Plot();
        double[] xs = _rows.Select(r => (double)r.Step).ToArray();
        var loss = plot.Add.Scatter(xs, _rows.Select(r => r.Loss).ToArray());
        loss.LegendText = "loss";
        loss.MarkerSize = 0;
        loss.LineWidth = 1;
        loss.Color = ScottPlot.Colors.LightSteelBlue;
        var avg = plot.Add.Scatter(xs, _rows.Select(r => r.Average).ToArray());
        avg.LegendText = "average loss";
        avg.MarkerSize = 0;
        avg.LineWidth = 2;
        avg.Color = ScottPlot.Colors.DarkBlue;
        plot.Title($"{_title}: loss by step");
        plot.XLabel("step");
        plot.YLabel("loss");
        plot.ShowLegend();
        var bytes = plot.GetImageBytes(800, 450, ScottPlot.ImageFormat.Png);
        AtomicFile.WriteAllBytes(ChartPath, bytes);
    }
}
