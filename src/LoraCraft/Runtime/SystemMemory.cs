namespace LoraCraft.Runtime;

/// <summary>Memory this process can still take: the kernel's MemAvailable, or less when a cgroup limit is nearer.</summary>
public static class SystemMemory
{
    public static long AvailableBytes()
    {
        long available = MemInfoKb("MemAvailable:") * 1024;
        if (available <= 0) available = long.MaxValue;
        // containers: cgroup v2 limit minus what the group already uses
        if (ReadLong("/sys/fs/cgroup/memory.max") is { } max && ReadLong("/sys/fs/cgroup/memory.current") is { } current)
            available = Math.Min(available, Math.Max(0, max - current));
        return available;
    }

    static long MemInfoKb(string key)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return long.Parse(line[key.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }

    static long? ReadLong(string path)
    {
        try
        {
            return File.Exists(path) && long.TryParse(File.ReadAllText(path).Trim(), out var v) ? v : null; // "max" = no limit
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }
}
