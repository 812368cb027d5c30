using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Models;

/// <summary>
/// Scaled dot-product attention for bf16 tensors on AVX-512 CPUs, written with .NET's vector
/// intrinsics: one pass over the keys per block of queries (the "flash" scheme: scores, softmax
/// and the weighted sum of values per tile, never the whole score matrix), every product and sum
/// in float32, the result rounded to bf16 once.
/// </summary>
/// <remarks>
/// Why not libtorch's: its CPU flash attention multiplies bf16 through MKL's bf16 GEMM, which on
/// AMD processors runs as float32 SGEMM on small tiles (≈55 GFLOP/s a core here). Batched bf16
/// matmuls through oneDNN are faster but round the scores to bf16 before the softmax (six times
/// the output error) and need the score matrix in memory. This kernel runs at the float32 FMA
/// peak (≈230 GFLOP/s a core on Zen 5) for both products, with libtorch's precision or better.
/// Layout: tokens [B, N, heads·D] as the projections produce them, so no transposes are needed
/// on either side.
/// </remarks>
public static unsafe class FusedAttention
{
    /// <summary>Keys per score micro-tile: three 16-float vectors.</summary>
    const int Panel = 48;
    /// <summary>Queries per work item (a multiple of 4, the micro-tile height).</summary>
    const int BlockRows = 64;
    /// <summary>Keys per softmax block (a multiple of <see cref="Panel"/>); scores of a block stay in L2.</summary>
    const int BlockKeys = 1536;
    /// <summary>float32 bits of log2(e): scores are kept in base 2 so the exponential is a power of two.</summary>
    const float Log2E = 1.44269504088896341f;

    /// <summary>Whether <see cref="Run"/> can take these tensors (else use libtorch's attention).</summary>
    public static bool Supports(Tensor q, Tensor k, Tensor v) =>
        Avx512F.IsSupported && Vector512.IsHardwareAccelerated
        && q.dtype == ScalarType.BFloat16 && k.dtype == ScalarType.BFloat16 && v.dtype == ScalarType.BFloat16
        && q.device_type == DeviceType.CPU
        && !(torch.is_grad_enabled() && (q.requires_grad || k.requires_grad || v.requires_grad))
        && q.dim() == 3 && k.dim() == 3 && v.dim() == 3;

    /// <summary>
    /// softmax(q·kᵀ/√D)·v per head for q [B, N, H·D] and k, v [B, M, H·D] (bf16, CPU): the heads'
    /// outputs side by side, [B, N, H·D] bf16.
    /// </summary>
    public static Tensor Run(Tensor q, Tensor k, Tensor v, int heads)
    {
        if (!Supports(q, k, v)) throw new ArgumentException("FusedAttention needs bf16 CPU tensors [B, N, C] on an AVX-512 CPU");
        long batch = q.shape[0], n = q.shape[1], c = q.shape[2], m = k.shape[1];
        if (k.shape[0] != batch || v.shape[0] != batch || k.shape[2] != c || v.shape[2] != c || v.shape[1] != m || c % heads != 0)
            throw new ArgumentException($"attention shapes q [{string.Join(",", q.shape)}] k [{string.Join(",", k.shape)}] v [{string.Join(",", v.shape)}] with {heads} heads");
        using var qc = q.contiguous();
        using var kc = k.contiguous();
        using var vc = v.contiguous();
        var output = torch.empty([batch, n, c], ScalarType.BFloat16);
        if (n == 0 || batch == 0) return output;
        var shape = new Shape(batch, n, m, c, heads);
        float* panels = null, values = null;
        try
        {
            panels = Alloc(shape.Items * shape.PanelFloats);
            values = Alloc(shape.Items * shape.ValueFloats);
            var plan = new Plan(shape, Ptr(qc), Ptr(kc), Ptr(vc), Ptr(output), panels, values);
            var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, torch.get_num_threads()) };
            Parallel.For(0, (int)shape.Items, options, plan.PrepareKeysAndValues);
            Parallel.For(0L, shape.Items * shape.QueryBlocks, options, plan.NewScratch, plan.QueryBlock, Plan.FreeScratch);
        }
        finally
        {
            NativeMemory.AlignedFree(panels);
            NativeMemory.AlignedFree(values);
        }
        return output;
    }

    static ushort* Ptr(Tensor t) => (ushort*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    static float* Alloc(long floats) => (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, floats) * sizeof(float)), 64);

    readonly record struct Shape(long Batch, long N, long M, long C, int Heads)
    {
        public int D => (int)(C / Heads);
        /// <summary>Head width rounded up to whole vectors (values are zero-padded).</summary>
        public int Dp => (D + 15) / 16 * 16;
        /// <summary>Keys rounded up to whole panels (padding keys get a score of -inf).</summary>
        public long Mp => (M + Panel - 1) / Panel * Panel;
        public long Items => Batch * Heads;
        public long QueryBlocks => (N + BlockRows - 1) / BlockRows;
        public long PanelFloats => Mp * D;
        public long ValueFloats => Mp * Dp;
        public int KeysPerBlock => (int)Math.Min(BlockKeys, Mp);
    }

    /// <summary>One call's pointers and the two phases run in parallel.</summary>
    sealed class Plan(Shape s, ushort* q, ushort* k, ushort* v, ushort* output, float* panels, float* values)
    {
        /// <summary>Keys of one (batch, head) to float32 panels [M/48][D][48]; values to rows [M][Dp].</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void PrepareKeysAndValues(int item)
        {
            long b = item / s.Heads, h = item % s.Heads;
            int d = s.D, dp = s.Dp;
            float* kd = panels + item * s.PanelFloats, vd = values + item * s.ValueFloats;
            long fullPanels = s.M / Panel;
            if (s.Mp > s.M) new Span<float>(kd + fullPanels * d * Panel, (int)((s.Mp / Panel - fullPanels) * d * Panel)).Clear();
            if (s.Mp > s.M) new Span<float>(vd + s.M * dp, (int)((s.Mp - s.M) * dp)).Clear();
            for (long j = 0; j < s.M; j++)
            {
                ushort* ks = k + (b * s.M + j) * s.C + h * d, vs = v + (b * s.M + j) * s.C + h * d;
                float* panel = kd + j / Panel * d * Panel + j % Panel;
                for (int t = 0; t < d; t++) panel[t * Panel] = Bf16(ks[t]);
                float* row = vd + j * dp;
                for (int t = 0; t < d; t++) row[t] = Bf16(vs[t]);
                for (int t = d; t < dp; t++) row[t] = 0;
            }
        }

        int ScratchFloats => BlockRows * s.D + BlockRows * s.KeysPerBlock + BlockRows * s.Dp + 2 * BlockRows;

        public IntPtr NewScratch() => (IntPtr)Alloc(ScratchFloats);

        public static void FreeScratch(IntPtr p) => NativeMemory.AlignedFree((void*)p);

        /// <summary>One block of queries of one head against every key, online softmax over key blocks.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public IntPtr QueryBlock(long work, ParallelLoopState _, IntPtr scratch)
        {
            long item = work / s.QueryBlocks, block = work % s.QueryBlocks;
            long b = item / s.Heads, h = item % s.Heads;
            int d = s.D, dp = s.Dp, bc = s.KeysPerBlock;
            float* qf = (float*)scratch, scores = qf + BlockRows * d, acc = scores + BlockRows * bc;
            float* rowMax = acc + BlockRows * dp, rowSum = rowMax + BlockRows;
            long i0 = block * BlockRows;
            int rows = (int)Math.Min(BlockRows, s.N - i0);
            float scale = Log2E / MathF.Sqrt(d);
            for (int r = 0; r < BlockRows; r++)
            {
                float* dst = qf + r * d;
                if (r < rows)
                {
                    ushort* src = q + (b * s.N + i0 + r) * s.C + h * d;
                    for (int t = 0; t < d; t++) dst[t] = Bf16(src[t]) * scale;
                }
                else new Span<float>(dst, d).Clear();
                rowMax[r] = float.NegativeInfinity;
                rowSum[r] = 0;
            }
            new Span<float>(acc, BlockRows * dp).Clear();
            float* kd = panels + item * s.PanelFloats, vd = values + item * s.ValueFloats;
            int tileRows = (rows + 3) / 4 * 4;
            for (long j0 = 0; j0 < s.Mp; j0 += bc)
            {
                int keys = (int)Math.Min(bc, s.Mp - j0), valid = (int)Math.Min(keys, s.M - j0);
                for (int r0 = 0; r0 < tileRows; r0 += 4)
                    for (int p = 0; p < keys / Panel; p++)
                        Scores4x48(qf + r0 * d, d, kd + (j0 / Panel + p) * d * Panel, scores + r0 * bc + p * Panel, bc);
                for (int r = 0; r < rows; r++)
                    Softmax(scores + r * bc, keys, valid, ref rowMax[r], ref rowSum[r], acc + r * dp, dp);
                for (int r0 = 0; r0 < tileRows; r0 += 4)
                    WeightedValues(scores + r0 * bc, bc, vd + j0 * dp, dp, keys, acc + r0 * dp);
            }
            for (int r = 0; r < rows; r++)
            {
                ushort* dst = output + (b * s.N + i0 + r) * s.C + h * d;
                float inv = 1f / rowSum[r];
                float* src = acc + r * dp;
                for (int t = 0; t < d; t++) dst[t] = ToBf16(src[t] * inv);
            }
            return scratch;
        }
    }

    /// <summary>
    /// Turns one row of base-2 scores into weights 2^(s - max) in place, updating the row's running
    /// max and sum and rescaling its accumulated output when the max grows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Softmax(float* s, int keys, int valid, ref float runningMax, ref float runningSum, float* acc, int dp)
    {
        for (int j = valid; j < keys; j++) s[j] = float.NegativeInfinity;
        var mv = Vector512.Create(float.NegativeInfinity);
        for (int j = 0; j < keys; j += 16) mv = Vector512.Max(mv, Vector512.Load(s + j));
        float newMax = MathF.Max(runningMax, HorizontalMax(mv));
        float rescale = MathF.Pow(2, runningMax - newMax);
        var mb = Vector512.Create(newMax);
        var sum = Vector512<float>.Zero;
        for (int j = 0; j < keys; j += 16)
        {
            var e = Exp2(Vector512.Load(s + j) - mb);
            e.Store(s + j);
            sum += e;
        }
        runningSum = runningSum * rescale + Vector512.Sum(sum);
        runningMax = newMax;
        if (rescale != 1f)
        {
            var f = Vector512.Create(rescale);
            for (int t = 0; t < dp; t += 16) (Vector512.Load(acc + t) * f).Store(acc + t);
        }
    }

    /// <summary>2^x for x ≤ 0 (below -126 flushes to about 0): x = n + r, 2^r by its Taylor series to r⁶ (error &lt; 3e-6).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Exp2(Vector512<float> x)
    {
        x = Vector512.Max(x, Vector512.Create(-126.0f));
        var n = Avx512F.RoundScale(x, 0);
        var r = x - n;
        var p = Vector512.Create(1.5403530393381606e-4f); // ln2^6 / 6!
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.3333558146428443e-3f)); // ln2^5 / 5!
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(9.6181291076284772e-3f)); // ln2^4 / 4!
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(5.5504108664821580e-2f)); // ln2^3 / 3!
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(2.4022650695910071e-1f)); // ln2^2 / 2
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(6.9314718055994531e-1f)); // ln2
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        return Avx512F.Scale(p, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float HorizontalMax(Vector512<float> v)
    {
        var a = Vector256.Max(v.GetLower(), v.GetUpper());
        var b = Vector128.Max(a.GetLower(), a.GetUpper());
        return MathF.Max(MathF.Max(b.GetElement(0), b.GetElement(1)), MathF.Max(b.GetElement(2), b.GetElement(3)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Bf16(ushort u) => BitConverter.Int32BitsToSingle(u << 16);

    /// <summary>float32 to bf16, round to nearest even (what libtorch's conversion does for finite values).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static ushort ToBf16(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((bits >> 16) | 0x40);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)(bits >> 16);
    }

    /// <summary>Scores of 4 query rows (q rows D apart) against one 48-key panel [D][48], into s (rows ldS apart).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scores4x48(float* q, int d, float* panel, float* s, int ldS)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default,
                         a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        float* q0 = q, q1 = q + d, q2 = q + 2 * d, q3 = q + 3 * d;
        for (int t = 0; t < d; t++)
        {
            float* kp = panel + t * Panel;
            var k0 = Vector512.Load(kp);
            var k1 = Vector512.Load(kp + 16);
            var k2 = Vector512.Load(kp + 32);
            var x = Vector512.Create(q0[t]);
            a00 = Vector512.FusedMultiplyAdd(x, k0, a00); a01 = Vector512.FusedMultiplyAdd(x, k1, a01); a02 = Vector512.FusedMultiplyAdd(x, k2, a02);
            x = Vector512.Create(q1[t]);
            a10 = Vector512.FusedMultiplyAdd(x, k0, a10); a11 = Vector512.FusedMultiplyAdd(x, k1, a11); a12 = Vector512.FusedMultiplyAdd(x, k2, a12);
            x = Vector512.Create(q2[t]);
            a20 = Vector512.FusedMultiplyAdd(x, k0, a20); a21 = Vector512.FusedMultiplyAdd(x, k1, a21); a22 = Vector512.FusedMultiplyAdd(x, k2, a22);
            x = Vector512.Create(q3[t]);
            a30 = Vector512.FusedMultiplyAdd(x, k0, a30); a31 = Vector512.FusedMultiplyAdd(x, k1, a31); a32 = Vector512.FusedMultiplyAdd(x, k2, a32);
        }
        a00.Store(s); a01.Store(s + 16); a02.Store(s + 32);
        s += ldS; a10.Store(s); a11.Store(s + 16); a12.Store(s + 32);
        s += ldS; a20.Store(s); a21.Store(s + 16); a22.Store(s + 32);
        s += ldS; a30.Store(s); a31.Store(s + 16); a32.Store(s + 32);
    }

    /// <summary>acc[4][dp] += p[4][keys] · v[keys][dp], in column strips of up to 4 vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void WeightedValues(float* p, int ldP, float* v, int dp, int keys, float* acc)
    {
        int vectors = dp / 16, c = 0;
        while (c < vectors)
        {
            int left = vectors - c;
            int strip = left >= 4 && left != 5 ? 4 : left == 5 ? 3 : left; // 5 = 3 + 2, never a lone strip of 1 after 4
            float* vv = v + c * 16, aa = acc + c * 16;
            switch (strip)
            {
                case 4: Values4x4(p, ldP, vv, dp, keys, aa); break;
                case 3: Values4x3(p, ldP, vv, dp, keys, aa); break;
                case 2: Values4x2(p, ldP, vv, dp, keys, aa); break;
                default: Values4x1(p, ldP, vv, dp, keys, aa); break;
            }
            c += strip;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Values4x4(float* p, int ldP, float* v, int ldV, int keys, float* o)
    {
        int ldO = ldV;
        var a00 = Vector512.Load(o); var a01 = Vector512.Load(o + 16); var a02 = Vector512.Load(o + 32); var a03 = Vector512.Load(o + 48);
        var a10 = Vector512.Load(o + ldO); var a11 = Vector512.Load(o + ldO + 16); var a12 = Vector512.Load(o + ldO + 32); var a13 = Vector512.Load(o + ldO + 48);
        var a20 = Vector512.Load(o + 2 * ldO); var a21 = Vector512.Load(o + 2 * ldO + 16); var a22 = Vector512.Load(o + 2 * ldO + 32); var a23 = Vector512.Load(o + 2 * ldO + 48);
        var a30 = Vector512.Load(o + 3 * ldO); var a31 = Vector512.Load(o + 3 * ldO + 16); var a32 = Vector512.Load(o + 3 * ldO + 32); var a33 = Vector512.Load(o + 3 * ldO + 48);
        float* p0 = p, p1 = p + ldP, p2 = p + 2 * ldP, p3 = p + 3 * ldP;
        for (int j = 0; j < keys; j++)
        {
            float* row = v + j * ldV;
            var v0 = Vector512.Load(row); var v1 = Vector512.Load(row + 16); var v2 = Vector512.Load(row + 32); var v3 = Vector512.Load(row + 48);
            var x = Vector512.Create(p0[j]);
            a00 = Vector512.FusedMultiplyAdd(x, v0, a00); a01 = Vector512.FusedMultiplyAdd(x, v1, a01); a02 = Vector512.FusedMultiplyAdd(x, v2, a02); a03 = Vector512.FusedMultiplyAdd(x, v3, a03);
            x = Vector512.Create(p1[j]);
            a10 = Vector512.FusedMultiplyAdd(x, v0, a10); a11 = Vector512.FusedMultiplyAdd(x, v1, a11); a12 = Vector512.FusedMultiplyAdd(x, v2, a12); a13 = Vector512.FusedMultiplyAdd(x, v3, a13);
            x = Vector512.Create(p2[j]);
            a20 = Vector512.FusedMultiplyAdd(x, v0, a20); a21 = Vector512.FusedMultiplyAdd(x, v1, a21); a22 = Vector512.FusedMultiplyAdd(x, v2, a22); a23 = Vector512.FusedMultiplyAdd(x, v3, a23);
            x = Vector512.Create(p3[j]);
            a30 = Vector512.FusedMultiplyAdd(x, v0, a30); a31 = Vector512.FusedMultiplyAdd(x, v1, a31); a32 = Vector512.FusedMultiplyAdd(x, v2, a32); a33 = Vector512.FusedMultiplyAdd(x, v3, a33);
        }
        a00.Store(o); a01.Store(o + 16); a02.Store(o + 32); a03.Store(o + 48);
        o += ldO; a10.Store(o); a11.Store(o + 16); a12.Store(o + 32); a13.Store(o + 48);
        o += ldO; a20.Store(o); a21.Store(o + 16); a22.Store(o + 32); a23.Store(o + 48);
        o += ldO; a30.Store(o); a31.Store(o + 16); a32.Store(o + 32); a33.Store(o + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Values4x3(float* p, int ldP, float* v, int ldV, int keys, float* o)
    {
        int ldO = ldV;
        var a00 = Vector512.Load(o); var a01 = Vector512.Load(o + 16); var a02 = Vector512.Load(o + 32);
        var a10 = Vector512.Load(o + ldO); var a11 = Vector512.Load(o + ldO + 16); var a12 = Vector512.Load(o + ldO + 32);
        var a20 = Vector512.Load(o + 2 * ldO); var a21 = Vector512.Load(o + 2 * ldO + 16); var a22 = Vector512.Load(o + 2 * ldO + 32);
        var a30 = Vector512.Load(o + 3 * ldO); var a31 = Vector512.Load(o + 3 * ldO + 16); var a32 = Vector512.Load(o + 3 * ldO + 32);
        float* p0 = p, p1 = p + ldP, p2 = p + 2 * ldP, p3 = p + 3 * ldP;
        for (int j = 0; j < keys; j++)
        {
            float* row = v + j * ldV;
            var v0 = Vector512.Load(row); var v1 = Vector512.Load(row + 16); var v2 = Vector512.Load(row + 32);
            var x = Vector512.Create(p0[j]);
            a00 = Vector512.FusedMultiplyAdd(x, v0, a00); a01 = Vector512.FusedMultiplyAdd(x, v1, a01); a02 = Vector512.FusedMultiplyAdd(x, v2, a02);
            x = Vector512.Create(p1[j]);
            a10 = Vector512.FusedMultiplyAdd(x, v0, a10); a11 = Vector512.FusedMultiplyAdd(x, v1, a11); a12 = Vector512.FusedMultiplyAdd(x, v2, a12);
            x = Vector512.Create(p2[j]);
            a20 = Vector512.FusedMultiplyAdd(x, v0, a20); a21 = Vector512.FusedMultiplyAdd(x, v1, a21); a22 = Vector512.FusedMultiplyAdd(x, v2, a22);
            x = Vector512.Create(p3[j]);
            a30 = Vector512.FusedMultiplyAdd(x, v0, a30); a31 = Vector512.FusedMultiplyAdd(x, v1, a31); a32 = Vector512.FusedMultiplyAdd(x, v2, a32);
        }
        a00.Store(o); a01.Store(o + 16); a02.Store(o + 32);
        o += ldO; a10.Store(o); a11.Store(o + 16); a12.Store(o + 32);
        o += ldO; a20.Store(o); a21.Store(o + 16); a22.Store(o + 32);
        o += ldO; a30.Store(o); a31.Store(o + 16); a32.Store(o + 32);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Values4x2(float* p, int ldP, float* v, int ldV, int keys, float* o)
    {
        int ldO = ldV;
        var a00 = Vector512.Load(o); var a01 = Vector512.Load(o + 16);
        var a10 = Vector512.Load(o + ldO); var a11 = Vector512.Load(o + ldO + 16);
        var a20 = Vector512.Load(o + 2 * ldO); var a21 = Vector512.Load(o + 2 * ldO + 16);
        var a30 = Vector512.Load(o + 3 * ldO); var a31 = Vector512.Load(o + 3 * ldO + 16);
        float* p0 = p, p1 = p + ldP, p2 = p + 2 * ldP, p3 = p + 3 * ldP;
        for (int j = 0; j < keys; j++)
        {
            float* row = v + j * ldV;
            var v0 = Vector512.Load(row); var v1 = Vector512.Load(row + 16);
            var x = Vector512.Create(p0[j]); a00 = Vector512.FusedMultiplyAdd(x, v0, a00); a01 = Vector512.FusedMultiplyAdd(x, v1, a01);
            x = Vector512.Create(p1[j]); a10 = Vector512.FusedMultiplyAdd(x, v0, a10); a11 = Vector512.FusedMultiplyAdd(x, v1, a11);
            x = Vector512.Create(p2[j]); a20 = Vector512.FusedMultiplyAdd(x, v0, a20); a21 = Vector512.FusedMultiplyAdd(x, v1, a21);
            x = Vector512.Create(p3[j]); a30 = Vector512.FusedMultiplyAdd(x, v0, a30); a31 = Vector512.FusedMultiplyAdd(x, v1, a31);
        }
        a00.Store(o); a01.Store(o + 16);
        o += ldO; a10.Store(o); a11.Store(o + 16);
        o += ldO; a20.Store(o); a21.Store(o + 16);
        o += ldO; a30.Store(o); a31.Store(o + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Values4x1(float* p, int ldP, float* v, int ldV, int keys, float* o)
    {
        int ldO = ldV;
        var a0 = Vector512.Load(o); var a1 = Vector512.Load(o + ldO); var a2 = Vector512.Load(o + 2 * ldO); var a3 = Vector512.Load(o + 3 * ldO);
        for (int j = 0; j < keys; j++)
        {
            var v0 = Vector512.Load(v + j * ldV);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), v0, a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Create(p[ldP + j]), v0, a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Create(p[2 * ldP + j]), v0, a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.Create(p[3 * ldP + j]), v0, a3);
        }
        a0.Store(o); a1.Store(o + ldO); a2.Store(o + 2 * ldO); a3.Store(o + 3 * ldO);
    }
}
