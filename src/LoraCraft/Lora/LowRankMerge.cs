using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora;

/// <summary>
/// The merge of low-rank updates into a bf16 weight in one pass: dest = bf16(W0 + Σ α·up·down),
/// accumulated in float32 (the patcher's arithmetic) but without the layer-sized float32 copy,
/// the separate add and the conversion back — each row of W0 is read once and written once, four
/// rows at a time so every row of a down factor loaded feeds four fused multiply-adds. The
/// rounding to bf16 is to nearest even, as torch converts. AVX-512 only; callers fall back.
/// </summary>
public static unsafe class LowRankMerge
{
    public static bool Supported => Avx512F.IsSupported && Vector512.IsHardwareAccelerated;

    /// <summary>One update: up [O, r] and down [r, I], contiguous float32, times <see cref="Alpha"/>.</summary>
    public readonly record struct Factor(Tensor Up, Tensor Down, float Alpha);

    /// <summary>Whether <paramref name="weight"/> (and its original) can be merged here: bf16, contiguous, O x I.</summary>
    public static bool Fits(Tensor weight) => Supported && weight.dtype == ScalarType.BFloat16 && weight.device_type == DeviceType.CPU && weight.is_contiguous();

    /// <param name="original">W0, bf16, contiguous, the weight's shape</param>
    /// <param name="dest">the weight, bf16, contiguous (may be <paramref name="original"/>)</param>
    public static void Apply(Tensor original, IReadOnlyList<Factor> factors, Tensor dest)
    {
        long rows = dest.shape[0], cols = dest.numel() / rows;
        if (!Fits(original) || !Fits(dest) || original.numel() != dest.numel())
            throw new ArgumentException("bf16 contiguous weights of one size expected");
        foreach (var f in factors)
            if (f.Up.dtype != ScalarType.Float32 || f.Down.dtype != ScalarType.Float32 || !f.Up.is_contiguous() || !f.Down.is_contiguous()
                || f.Up.shape[0] != rows || f.Down.shape[1] != cols || f.Up.shape[1] != f.Down.shape[0])
                throw new ArgumentException("float32 contiguous factors [O, r] x [r, I] expected");
        var job = new Job
        {
            Original = (ushort*)Ptr(original), Dest = (ushort*)Ptr(dest), Rows = rows, Cols = cols,
            Ups = factors.Select(f => (IntPtr)Ptr(f.Up)).ToArray(), Downs = factors.Select(f => (IntPtr)Ptr(f.Down)).ToArray(),
            Ranks = factors.Select(f => (int)f.Up.shape[1]).ToArray(), Alphas = factors.Select(f => f.Alpha).ToArray(),
        };
        long blocks = (rows + 3) / 4;
        int threads = Math.Max(1, torch.get_num_threads());
        if (threads == 1 || blocks < 8) job.Run(0, blocks);
        else
        {
            long per = (blocks + threads - 1) / threads;
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => job.Run(t * per, Math.Min(blocks, (t + 1) * per)));
        }
        GC.KeepAlive(original);
        GC.KeepAlive(dest);
        GC.KeepAlive(factors);
    }

    static void* Ptr(Tensor t) => Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    sealed class Job
    {
        public ushort* Original, Dest;
        public long Rows, Cols;
        public IntPtr[] Ups = [], Downs = [];
        public int[] Ranks = [];
        public float[] Alphas = [];

        // fully optimised from the first call: the first apply must not run unoptimised vector code
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(long firstBlock, long endBlock)
        {
            long cols = Cols;
            int total = Ranks.Sum();
            // per block: α·up for its four rows, factor after factor ([k][row])
            var coef = GC.AllocateUninitializedArray<float>(4 * Math.Max(1, total), pinned: true);
            var scratch = GC.AllocateUninitializedArray<float>(4 * 32, pinned: true);
            fixed (float* c = coef, tmp = scratch)
            {
                for (long b = firstBlock; b < endBlock; b++)
                {
                    long row = b * 4;
                    int n = (int)Math.Min(4, Rows - row);
                    int at = 0;
                    for (int f = 0; f < Ups.Length; f++)
                    {
                        float* up = (float*)Ups[f];
                        for (int k = 0; k < Ranks[f]; k++, at++)
                            for (int j = 0; j < 4; j++)
                                c[4 * at + j] = j < n ? Alphas[f] * up[(row + j) * Ranks[f] + k] : 0;
                    }
                    long i = 0;
                    if (n == 4)
                        for (; i + 32 <= cols; i += 32) Block(row, i, c);
                    // the rest (a last partial block of rows, columns past a multiple of 32): one element at a time
                    for (int j = 0; j < n; j++)
                        for (long col = n == 4 ? i : 0; col < cols; col++)
                        {
                            float v = BitConverter.Int32BitsToSingle(Original[(row + j) * cols + col] << 16);
                            at = 0;
                            for (int f = 0; f < Ups.Length; f++)
                            {
                                float* down = (float*)Downs[f];
                                for (int k = 0; k < Ranks[f]; k++, at++) v = MathF.FusedMultiplyAdd(down[k * cols + col], c[4 * at + j], v);
                            }
                            Dest[(row + j) * cols + col] = Round(v);
                        }
                }
            }
        }

        /// <summary>Rows row..row+3, columns col..col+31: eight accumulators in registers over every rank of every factor.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        void Block(long row, long col, float* c)
        {
            long cols = Cols;
            ushort* w = Original + row * cols + col;
            var a0 = Widen(w); var b0 = Widen(w + 16);
            var a1 = Widen(w + cols); var b1 = Widen(w + cols + 16);
            var a2 = Widen(w + 2 * cols); var b2 = Widen(w + 2 * cols + 16);
            var a3 = Widen(w + 3 * cols); var b3 = Widen(w + 3 * cols + 16);
            int at = 0;
            for (int f = 0; f < Downs.Length; f++)
            {
                float* d = (float*)Downs[f] + col;
                for (int k = 0; k < Ranks[f]; k++, at++, d += cols)
                {
                    var x = Vector512.Load(d);
                    var y = Vector512.Load(d + 16);
                    float* ck = c + 4 * at;
                    var v = Vector512.Create(ck[0]);
                    a0 = Avx512F.FusedMultiplyAdd(x, v, a0); b0 = Avx512F.FusedMultiplyAdd(y, v, b0);
                    v = Vector512.Create(ck[1]);
                    a1 = Avx512F.FusedMultiplyAdd(x, v, a1); b1 = Avx512F.FusedMultiplyAdd(y, v, b1);
                    v = Vector512.Create(ck[2]);
                    a2 = Avx512F.FusedMultiplyAdd(x, v, a2); b2 = Avx512F.FusedMultiplyAdd(y, v, b2);
                    v = Vector512.Create(ck[3]);
                    a3 = Avx512F.FusedMultiplyAdd(x, v, a3); b3 = Avx512F.FusedMultiplyAdd(y, v, b3);
                }
            }
            ushort* o = Dest + row * cols + col;
            Narrow(a0, o); Narrow(b0, o + 16);
            Narrow(a1, o + cols); Narrow(b1, o + cols + 16);
            Narrow(a2, o + 2 * cols); Narrow(b2, o + 2 * cols + 16);
            Narrow(a3, o + 3 * cols); Narrow(b3, o + 3 * cols + 16);
        }
    }

    /// <summary>16 bf16 → float32: the bits moved to the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Widen(ushort* src) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load(src)), 16).AsSingle();

    /// <summary>16 float32 → bf16, round to nearest even (weights hold no NaNs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Narrow(Vector512<float> v, ushort* dst)
    {
        var bits = v.AsUInt32();
        var lsb = Avx512F.And(Avx512F.ShiftRightLogical(bits, 16), Vector512.Create(1u));
        var rounded = Avx512F.ShiftRightLogical(Avx512F.Add(bits, Avx512F.Add(Vector512.Create(0x7FFFu), lsb)), 16);
        Avx512F.ConvertToVector256UInt16(rounded).Store(dst);
    }

    static ushort Round(float v)
    {
        uint bits = (uint)BitConverter.SingleToInt32Bits(v);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
    }
}
