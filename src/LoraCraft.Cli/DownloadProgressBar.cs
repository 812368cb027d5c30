using System.Diagnostics;
using LoraCraft.Lora.Hub;

namespace LoraCraft.Cli;

/// <summary>
/// Download progress on stderr: `NAME [#####.....] 12.0/48.0 MiB 3.1 MiB/s`, redrawn in place
/// (at most 10 times a second) on a terminal, and printed at every 25% when stderr is redirected.
/// </summary>
public sealed class DownloadProgressBar : IProgress<DownloadProgress>
{
    const int Width = 24;
    readonly TextWriter _err;
    readonly bool _interactive;
    readonly Stopwatch _clock = Stopwatch.StartNew();
    readonly object _lock = new();
    long _firstBytes = -1;
    int _lastQuarter = -1;
    TimeSpan _lastDraw = TimeSpan.MinValue;
    bool _done;

    public DownloadProgressBar(TextWriter err)
    {
        _err = err;
        _interactive = ReferenceEquals(err, Console.Error) && !Console.IsErrorRedirected;
    }

    public void Report(DownloadProgress p)
    {
        lock (_lock)
        {
            if (_done) return;
            if (_firstBytes < 0) _firstBytes = p.BytesReceived; // a resumed download's speed counts only this run
            bool end = p.TotalBytes is long t && p.BytesReceived >= t;
            double seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-3);
            double speed = (p.BytesReceived - _firstBytes) / seconds;
            string amount = p.TotalBytes is long total
                ? $"{TextFormat.Human(p.BytesReceived)}/{TextFormat.Human(total)}"
                : TextFormat.Human(p.BytesReceived);
            int filled = p.TotalBytes is long all && all > 0 ? (int)(Width * Math.Min(1, (double)p.BytesReceived / all)) : -1;
            string bar = filled >= 0 ? $" [{new string('#', filled)}{new string('.', Width - filled)}]" : "";
            string line = $"{p.FileName}{bar} {amount} {TextFormat.Human((long)speed)}/s";
            if (_interactive)
            {
                if (!end && _clock.Elapsed - _lastDraw < TimeSpan.FromMilliseconds(100)) return;
                _lastDraw = _clock.Elapsed;
                _err.Write("\r" + line.PadRight(79) + (end ? "\n" : ""));
            }
            else
            {
                int quarter = p.TotalBytes is long size && size > 0 ? (int)(4 * p.BytesReceived / size) : 0;
                if (quarter == _lastQuarter && !end) return;
                _lastQuarter = quarter;
                _err.WriteLine(line);
            }
            _done = end;
        }
    }

    /// <summary>Ends a line left open on a terminal (a failed or cancelled download).</summary>
    public void Finish()
    {
        lock (_lock)
        {
            if (_interactive && !_done && _firstBytes >= 0) _err.WriteLine();
            _done = true;
        }
    }
}
