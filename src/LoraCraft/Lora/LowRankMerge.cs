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
/// the separate add and the conversion back. W0 may come as stored in the checkpoint (float16,
/// bfloat16 or float32): it is rounded to bf16 first, exactly as loading converts it, so the
/// result is the same as merging into the loaded weight. Work goes column strip by column strip
/// (32 columns: the strip of every down factor stays in L1) and four rows at a time (eight
/// accumulators in registers; every row of a down strip loaded feeds eight fused multiply-adds).
/// Rounding to bf16 is to nearest even, as torch converts. AVX-512 only; callers fall back.
/// </summary>
public static unsafe class LowRankMerge
{
    public static bool Supported => Avx512F.IsSupported && Vector512.IsHardwareAccelerated;

    /// <summary>One update: up [O, r] and down [r, I], contiguous float16, bfloat16 or float32 (read as float32), times <see cref="Alpha"/>.</summary>
    public readonly record struct Factor(Tensor Up, Tensor Down, float Alpha);

    /// <summary>Whether <paramref name="weight"/> can be merged into here: bf16, contiguous, on the CPU.</summary>
    public static bool Fits(Tensor weight) => Supported && weight.dtype == ScalarType.BFloat16 && weight.device_type == DeviceType.CPU && weight.is_contiguous();

    /// <summary>Whether <paramref name="original"/> can be read here: float16, bfloat16 or float32, contiguous, on the CPU.</summary>
    public static bool Reads(Tensor original) =>
        Supported && original.dtype is ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32 && original.device_type == DeviceType.CPU && original.is_contiguous();

    /// <param name="original">W0 with the weight's element count: float16, bfloat16 or float32, contiguous</param>
    /// <param name="dest">the weight, bf16, contiguous (may be <paramref name="original"/>)</param>
    public static void Apply(Tensor original, IReadOnlyList<Factor> factors, Tensor dest)
    {
        long rows = dest.shape[0], cols = dest.numel() / rows;
        if (!Reads(original) || !Fits(dest) || original.numel() != dest.numel())
            throw new ArgumentException("a contiguous float16/bfloat16/float32 original and a bf16 contiguous weight of one size expected");
        foreach (var f in factors)
            if (!Reads(f.Up) || !Reads(f.Down) || f.Up.dim() != 2 || f.Down.dim() != 2
                || f.Up.shape[0] != rows || f.Down.shape[1] != cols || f.Up.shape[1] != f.Down.shape[0])
                throw new ArgumentException("contiguous float16/bfloat16/float32 factors [O, r] x [r, I] expected");
        int rank = factors.Sum(f => (int)f.Up.shape[1]);
        // α·up of every factor side by side ([O, Σr]) and the rows of every down ([Σr] pointers)
        var coef = GC.AllocateUninitializedArray<float>((int)Math.Max(1, rows * rank), pinned: true);
        var downs = new IntPtr[rank];
        var kinds = new ScalarType[rank];
        int at = 0;
        foreach (var f in factors)
        {
            int r = (int)f.Up.shape[1];
            byte* up = (byte*)Ptr(f.Up), down = (byte*)Ptr(f.Down);
            int upSize = f.Up.dtype == ScalarType.Float32 ? 4 : 2, downSize = f.Down.dtype == ScalarType.Float32 ? 4 : 2;
            fixed (float* c = coef)
                for (long o = 0; o < rows; o++) Scaled(up + o * r * upSize, f.Up.dtype, r, f.Alpha, c + o * rank + at);
            for (int k = 0; k < r; k++)
            {
                downs[at + k] = (IntPtr)(down + k * cols * downSize);
                kinds[at + k] = f.Down.dtype;
            }
            at += r;
        }
        fixed (float* c = coef)
        {
            var job = new Job
            {
                Original = (byte*)Ptr(original), Kind = original.dtype, Dest = (ushort*)Ptr(dest), Rows = rows, Cols = cols,
                Coef = c, Rank = rank, Downs = downs, DownKinds = kinds,
            };
            long blocks = (rows + 3) / 4;
            int threads = Math.Max(1, torch.get_num_threads());
            if (threads == 1 || blocks < 8) job.Run(0, blocks);
            else
            {
                long per = (blocks + threads - 1) / threads;
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => job.Run(t * per, Math.Min(blocks, (t + 1) * per)));
            }
        }
        GC.KeepAlive(original);
        GC.KeepAlive(dest);
        GC.KeepAlive(factors);
    }

    static void* Ptr(Tensor t) => Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    sealed class Job
    {
        public byte* Original;
        public ScalarType Kind;
        public ushort* Dest;
        public long Rows, Cols;
        public float* Coef;
        public int Rank;
        public IntPtr[] Downs = [];
        public ScalarType[] DownKinds = [];

        // fully optimised from the first call: the first apply must not run unoptimised vector code
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(long firstBlock, long endBlock)
        {
            long cols = Cols, wide = cols / 32 * 32;
            long fullEnd = Math.Min(endBlock, Rows / 4);
            // each strip of the down factors copied to a contiguous [Σr, 32] buffer first: the
            // rows of a down factor sit a power-of-two-ish stride apart and would share L1 sets
            var strip = GC.AllocateUninitializedArray<float>(Math.Max(1, Rank) * 32, pinned: true);
            fixed (float* s = strip)
            {
                for (long col = 0; col < wide; col += 32)
                {
                    for (int k = 0; k < Rank; k++)
                    {
                        Load16(Downs[k], DownKinds[k], col).Store(s + 32 * k);
                        Load16(Downs[k], DownKinds[k], col + 16).Store(s + 32 * k + 16);
                    }
                    for (long b = firstBlock; b < fullEnd; b++) Block(b * 4, col, s);
                }
            }
            // the rest (a last partial block of rows, columns past a multiple of 32): one element at a time
            for (long b = firstBlock; b < endBlock; b++)
            {
                long row = b * 4;
                int n = (int)Math.Min(4, Rows - row);
                for (int j = 0; j < n; j++)
                    for (long col = b < fullEnd ? wide : 0; col < cols; col++)
                    {
                        long index = (row + j) * cols + col;
                        float v = ScalarW0(index);
                        float* coef = Coef + (row + j) * Rank;
                        for (int k = 0; k < Rank; k++) v = MathF.FusedMultiplyAdd(Scalar(Downs[k], DownKinds[k], col), coef[k], v);
                        Dest[index] = Round(v);
                    }
            }
        }

        /// <summary>Element <paramref name="index"/> of W0 as its bf16 value, in float32.</summary>
        float ScalarW0(long index) => BitConverter.Int32BitsToSingle(Round(Scalar((IntPtr)Original, Kind, index)) << 16);

        /// <summary>Rows row..row+3, columns col..col+31 (the down factors' strip in <paramref name="strip"/>): eight accumulators in registers over every rank.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        void Block(long row, long col, float* strip)
        {
            long cols = Cols;
            long i = row * cols + col;
            var a0 = W0(i); var b0 = W0(i + 16);
            var a1 = W0(i + cols); var b1 = W0(i + cols + 16);
            var a2 = W0(i + 2 * cols); var b2 = W0(i + 2 * cols + 16);
            var a3 = W0(i + 3 * cols); var b3 = W0(i + 3 * cols + 16);
            int rank = Rank;
            float* c0 = Coef + row * rank, c1 = c0 + rank, c2 = c1 + rank, c3 = c2 + rank;
            for (int k = 0; k < rank; k++)
            {
                float* d = strip + 32 * k;
                var x = Vector512.Load(d);
                var y = Vector512.Load(d + 16);
                var v = Vector512.Create(c0[k]);
                a0 = Avx512F.FusedMultiplyAdd(x, v, a0); b0 = Avx512F.FusedMultiplyAdd(y, v, b0);
                v = Vector512.Create(c1[k]);
                a1 = Avx512F.FusedMultiplyAdd(x, v, a1); b1 = Avx512F.FusedMultiplyAdd(y, v, b1);
                v = Vector512.Create(c2[k]);
                a2 = Avx512F.FusedMultiplyAdd(x, v, a2); b2 = Avx512F.FusedMultiplyAdd(y, v, b2);
                v = Vector512.Create(c3[k]);
                a3 = Avx512F.FusedMultiplyAdd(x, v, a3); b3 = Avx512F.FusedMultiplyAdd(y, v, b3);
            }
            ushort* o = Dest + i;
            Narrow(a0, o); Narrow(b0, o + 16);
            Narrow(a1, o + cols); Narrow(b1, o + cols + 16);
            Narrow(a2, o + 2 * cols); Narrow(b2, o + 2 * cols + 16);
            Narrow(a3, o + 3 * cols); Narrow(b3, o + 3 * cols + 16);
        }

        /// <summary>16 values of W0 from element <paramref name="index"/>, as bf16 values in float32.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        Vector512<float> W0(long index) =>
            Kind == ScalarType.BFloat16 ? Load16((IntPtr)Original, Kind, index) : ToBf16(Load16((IntPtr)Original, Kind, index));
    }

    /// <summary>16 values from element <paramref name="index"/> of a float16/bfloat16/float32 row, in float32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Load16(IntPtr row, ScalarType kind, long index) => kind switch
    {
        ScalarType.Float32 => Vector512.Load((float*)row + index),
        ScalarType.Float16 => WidenHalf(Vector256.Load((ushort*)row + index)),
        _ => WidenBf16(Vector256.Load((ushort*)row + index)),
    };

    static float Scalar(IntPtr row, ScalarType kind, long index) => kind switch
    {
        ScalarType.Float32 => ((float*)row)[index],
        ScalarType.Float16 => (float)((Half*)row)[index],
        _ => BitConverter.Int32BitsToSingle(((ushort*)row)[index] << 16),
    };

    /// <summary>α · <paramref name="n"/> values of a float16/bfloat16/float32 row into float32.</summary>
    static void Scaled(byte* src, ScalarType kind, int n, float alpha, float* dst)
    {
        int i = 0;
        var a = Vector512.Create(alpha);
        for (; i + 16 <= n; i += 16) Avx512F.Multiply(Load16((IntPtr)src, kind, i), a).Store(dst + i);
        for (; i < n; i++) dst[i] = alpha * Scalar((IntPtr)src, kind, i);
    }

    /// <summary>16 bf16 → float32: the bits moved to the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> WidenBf16(Vector256<ushort> h) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(h), 16).AsSingle();

    /// <summary>
    /// 16 float16 → float32, exactly: the magnitude's bits moved under a float32 exponent and
    /// scaled by 2^112 (which also normalises float16 subnormals), the sign put back.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> WidenHalf(Vector256<ushort> h)
    {
        var w = Avx512F.ConvertToVector512UInt32(h);
        var magnitude = Avx512F.ShiftLeftLogical(Avx512F.And(w, Vector512.Create(0x7FFFu)), 13).AsSingle();
        var scaled = Avx512F.Multiply(magnitude, Vector512.Create(BitConverter.Int32BitsToSingle(0x77800000))); // 2^112
        var sign = Avx512F.ShiftLeftLogical(Avx512F.And(w, Vector512.Create(0x8000u)), 16);
        return Avx512F.Or(scaled.AsUInt32(), sign).AsSingle();
    }

    /// <summary>float32 rounded to the nearest bf16 (even on ties), kept in float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> ToBf16(Vector512<float> v)
    {
        var bits = v.AsUInt32();
        var lsb = Avx512F.And(Avx512F.ShiftRightLogical(bits, 16), Vector512.Create(1u));
        var rounded = Avx512F.Add(bits, Avx512F.Add(Vector512.Create(0x7FFFu), lsb));
        return Avx512F.And(rounded, Vector512.Create(0xFFFF0000u)).AsSingle();
    }

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
