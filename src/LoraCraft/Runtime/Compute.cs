using static TorchSharp.torch;

namespace LoraCraft.Runtime;

/// <summary>Compute dtype and thread choices shared by every command that runs models.</summary>
public static class Compute
{
    /// <summary>`fp32`, `bf16` or `auto` (bf16 where the CPU has AMX or AVX512-BF16, else fp32).</summary>
    public static ScalarType ParseDType(string? name) => name switch
    {
        null or "auto" => CpuHasFastBf16() ? ScalarType.BFloat16 : ScalarType.Float32,
        "fp32" or "float32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        _ => throw new UserErrorException($"dtype must be fp32, bf16 or auto, got '{name}'") { Field = "dtype" },
    };

    public static string Name(ScalarType t) => t switch
    {
        ScalarType.Float32 => "fp32",
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "fp16",
        _ => t.ToString(),
    };

    static readonly Lazy<bool> FastBf16 = new(() =>
    {
        try
        {
            if (!File.Exists("/proc/cpuinfo")) return false;
            var flags = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) ?? "";
            var set = flags.Split([' ', '\t', ':'], StringSplitOptions.RemoveEmptyEntries).ToHashSet();
            return set.Contains("amx_bf16") || set.Contains("avx512_bf16");
        }
        catch (IOException) { return false; }
    });

    public static bool CpuHasFastBf16() => FastBf16.Value;

    /// <summary>`cpu`, `cuda` or `auto` (CUDA when TorchSharp's CUDA backend is present and sees a GPU).</summary>
    public static Device ParseDevice(string? name)
    {
        switch (name)
        {
            case null or "cpu":
                return CPU;
            case "auto":
                return CudaAvailable() ? CUDA : CPU;
            case "cuda":
                if (!CudaAvailable())
                    throw new UserErrorException(ErrorKind.Unsupported, "device cuda: no CUDA backend in this build or no GPU visible " +
                                                 "(build with -p:TorchBackend=cuda for TorchSharp-cuda-linux)") { Field = "device" };
                return CUDA;
            default:
                throw new UserErrorException($"device must be cpu, cuda or auto, got '{name}'") { Field = "device" };
        }
    }

    static bool CudaAvailable()
    {
        try { return cuda.is_available(); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException) { return false; }
    }

    /// <summary>
    /// Hands memory freed by one phase back to the system before the next: the UNet's freed
    /// activations would otherwise stay resident in malloc's heap while the VAE allocates its own.
    /// </summary>
    public static void ReleaseFreedMemory()
    {
        if (OperatingSystem.IsLinux()) _ = malloc_trim(0);
    }

    [System.Runtime.InteropServices.DllImport("libc")]
    static extern int malloc_trim(nuint pad);

    /// <summary>Sets libtorch's intra-op threads: all cores unless the user asked otherwise.</summary>
    public static int SetThreads(int? threads)
    {
        int n = threads ?? Environment.ProcessorCount;
        if (n < 1) throw new UserErrorException($"threads must be 1 or more, got {n}") { Field = "threads" };
        set_num_threads(n);
        return n;
    }
}
