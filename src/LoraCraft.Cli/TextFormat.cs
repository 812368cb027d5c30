using System.Globalization;

namespace LoraCraft.Cli;

/// <summary>Small text helpers shared by the commands that print file summaries.</summary>
public static class TextFormat
{
    /// <summary>A value on one line, cut after <paramref name="max"/> characters with its full length noted.</summary>
    public static string Shown(string value, int max = 100)
    {
        var line = Escape(value);
        if (line.Length <= max) return line;
        int cut = char.IsHighSurrogate(line[max - 1]) ? max - 1 : max;
        return string.Create(CultureInfo.InvariantCulture, $"{line[..cut]}… ({value.Length:N0} chars)");
    }

    // Metadata often holds JSON with newlines (kohya's ss_tag_frequency, peft's adapter config).
    public static string Escape(string s) => s.Replace("\r", "\\r").Replace("\n", "\\n").Replace("\t", "\\t");

    public static string Human(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double size = bytes;
        int unit = 0;
        while (size >= 1024 && unit < units.Length - 1) { size /= 1024; unit++; }
        return unit == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{size:0.0} {units[unit]}");
    }

    public static string Num(double v) => v.ToString("0.####", CultureInfo.InvariantCulture);
}
