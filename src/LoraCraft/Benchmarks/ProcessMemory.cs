namespace LoraCraft.Benchmarks;

/// <summary>Resident-set figures of this process from /proc (Linux); 0 elsewhere.</summary>
public static class ProcessMemory
{
    /// <summary>Peak resident set size so far (VmHWM), in MiB.</summary>
    public static double PeakRssMb() => ReadKb("VmHWM:") / 1024.0;

    static long ReadKb(string key)
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return 0;
        foreach (var line in File.ReadLines(status))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return long.Parse(line[key.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        return 0;
    }
}
