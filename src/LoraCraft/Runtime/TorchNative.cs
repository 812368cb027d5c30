using System.Runtime.InteropServices;
using System.Text;

namespace LoraCraft.Runtime;

/// <summary>
/// Makes TorchSharp's native library loadable on systems whose libstdc++ is older than the one
/// it was linked against (Debian 12 ships GCC 12; libLibTorchSharp.so asks for GLIBCXX_3.4.32
/// only for std::ios_base_library_init, which no relocation uses). When the plain load fails we
/// write a copy whose version need for GLIBCXX_3.4.32 is flagged weak, preload libtorch from its
/// own folder, and load that copy: later lookups of "libLibTorchSharp.so" resolve to it by soname.
/// </summary>
public static class TorchNative
{
    const string LibName = "libLibTorchSharp.so";
    const string MissingVersion = "GLIBCXX_3.4.32";
    static readonly Lazy<string> State = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Set when the repair failed; kept so the CLI can explain a later load failure.</summary>
    public static Exception? LoadError { get; internal set; }

    /// <summary>How the native library was loaded: "plain", "patched:PATH", or "not-linux".</summary>
    public static string Ensure() => State.Value;

    static string Load()
    {
        if (!OperatingSystem.IsLinux()) return "not-linux";
        var original = FindOriginal() ?? throw new DllNotFoundException(
            $"{LibName} not found next to the application (looked in {AppContext.BaseDirectory}).");
        if (NativeLibrary.TryLoad(original, out _)) return "plain";

        var dir = Path.GetDirectoryName(original)!;
        // Preload the libraries it needs from their own folder: its RUNPATH ($ORIGIN) does not
        // reach them from the copy's folder, and dlopen matches already-loaded ones by soname.
        foreach (var dep in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
        {
            var p = Path.Combine(dir, dep);
            if (File.Exists(p)) NativeLibrary.Load(p);
        }
        var patched = WritePatchedCopy(original);
        NativeLibrary.Load(patched);
        return "patched:" + patched;
    }

    static string? FindOriginal()
    {
        var baseDir = AppContext.BaseDirectory;
        string[] candidates =
        [
            Path.Combine(baseDir, "runtimes", "linux-x64", "native", LibName),
            Path.Combine(baseDir, LibName),
            Path.Combine(baseDir, "cpu", LibName),
        ];
        return candidates.FirstOrDefault(File.Exists);
    }

    static string WritePatchedCopy(string original)
    {
        var bytes = File.ReadAllBytes(original);
        int flagged = ElfVersionNeeds.MarkWeak(bytes, MissingVersion);
        if (flagged == 0)
            throw new DllNotFoundException($"{original} failed to load and needs no {MissingVersion}; cannot repair it.");
        var info = new FileInfo(original);
        var key = $"{info.Length:x}-{info.LastWriteTimeUtc.Ticks:x}";
        string dir;
        try
        {
            dir = Path.Combine(Paths.CacheRoot, "native", key);
            Directory.CreateDirectory(dir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            dir = Path.Combine(Path.GetTempPath(), "loracraft-native-" + key);
            Directory.CreateDirectory(dir);
        }
        var target = Path.Combine(dir, LibName);
        if (File.Exists(target) && new FileInfo(target).Length == bytes.Length) return target;
        var tmp = target + "." + Environment.ProcessId + ".tmp";
        File.WriteAllBytes(tmp, bytes);
        File.Move(tmp, target, overwrite: true);
        return target;
    }
}

/// <summary>Edits the ELF .gnu.version_r section in place (64-bit little-endian only).</summary>
public static class ElfVersionNeeds
{
    const ushort VerFlgWeak = 0x2;
    const uint ShtGnuVerneed = 0x6ffffffe;

    /// <summary>Sets VER_FLG_WEAK on every version need named <paramref name="version"/>; returns how many.</summary>
    public static int MarkWeak(byte[] elf, string version)
    {
        var s = elf.AsSpan();
        if (s.Length < 64 || s[0] != 0x7f || s[1] != (byte)'E' || s[2] != (byte)'L' || s[3] != (byte)'F')
            throw new BadImageFormatException("not an ELF file");
        if (s[4] != 2 || s[5] != 1) throw new BadImageFormatException("only 64-bit little-endian ELF is supported");
        long shoff = BitConverter.ToInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A), shnum = BitConverter.ToUInt16(elf, 0x3C);
        int count = 0;
        for (int i = 0; i < shnum; i++)
        {
            long sh = shoff + (long)i * shentsize;
            if (BitConverter.ToUInt32(elf, (int)sh + 4) != ShtGnuVerneed) continue;
            long offset = BitConverter.ToInt64(elf, (int)sh + 0x18);
            int link = (int)BitConverter.ToUInt32(elf, (int)sh + 0x28); // string table section
            long strOff = BitConverter.ToInt64(elf, (int)(shoff + (long)link * shentsize) + 0x18);
            long need = offset;
            while (true)
            {
                int cnt = BitConverter.ToUInt16(elf, (int)need + 2);
                long aux = need + BitConverter.ToUInt32(elf, (int)need + 8);
                for (int a = 0; a < cnt; a++)
                {
                    uint nameOff = BitConverter.ToUInt32(elf, (int)aux + 8);
                    if (ReadCString(elf, strOff + nameOff) == version)
                    {
                        ushort flags = BitConverter.ToUInt16(elf, (int)aux + 4);
                        BitConverter.TryWriteBytes(s.Slice((int)aux + 4, 2), (ushort)(flags | VerFlgWeak));
                        count++;
                    }
                    uint nextAux = BitConverter.ToUInt32(elf, (int)aux + 12);
                    if (nextAux == 0) break;
                    aux += nextAux;
                }
                uint next = BitConverter.ToUInt32(elf, (int)need + 12);
                if (next == 0) break;
                need += next;
            }
        }
        return count;
    }

    static string ReadCString(byte[] b, long at)
    {
        int end = (int)at;
        while (end < b.Length && b[end] != 0) end++;
        return Encoding.ASCII.GetString(b, (int)at, end - (int)at);
    }
}
