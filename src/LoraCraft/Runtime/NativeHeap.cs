namespace LoraCraft.Runtime;

/// <summary>
/// How the C heap that libtorch allocates tensors from is set up in this process. glibc serves
/// blocks above 32 MB (every activation of the VAE at 512 px, the UNet's GEGLU at 512 px) with
/// fresh mmap'd pages and unmaps them on free, so each such tensor pays one page fault per 4 KiB
/// it touches: on this machine kind about 10 µs a fault, 168 ms to add two 64 MB tensors that
/// take 3.6 ms once their pages exist. Asking glibc for transparent huge pages
/// (<c>GLIBC_TUNABLES=glibc.malloc.hugetlb=1</c>, read only at process start, so the
/// <c>./loracraft</c> launcher sets it) makes that a fault per 2 MiB: the same addition 15 ms, a
/// bf16 VAE decode at 512 px 10 s → 4.5 s, with the same peak memory (freed blocks still go back).
/// </summary>
public static class NativeHeap
{
    /// <summary>Whether this process was started with glibc's huge-page tunable on (1 or 2).</summary>
    public static bool HugePagesRequested() => HugePagesRequested(Environment.GetEnvironmentVariable("GLIBC_TUNABLES"));

    internal static bool HugePagesRequested(string? tunables) =>
        tunables is not null && tunables.Split(':').Any(t => t.Trim() is "glibc.malloc.hugetlb=1" or "glibc.malloc.hugetlb=2");
}
