using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft;

/// <summary>
/// Tensor arithmetic with numbers, safe to run while other threads allocate.
/// </summary>
/// <remarks>
/// A TorchSharp <see cref="Scalar"/> owns native memory and has a finalizer. TorchSharp's
/// operators make one on the fly for every number (<c>t * 0.5</c>) and even for <c>a + b</c> (an
/// alpha of 1); once its handle has been read nothing references it, so a garbage collection
/// started by another thread while the native call runs can free it under libtorch (seen as
/// "Expected false to be true" from <c>c10::Scalar::toDouble</c> in the default sampler, once in
/// three loaded test runs). Here every Scalar lives in a <c>using</c> variable or a static field
/// until the call returns. The LC0001 analyzer (src/LoraCraft.Analyzers) rejects the unsafe forms
/// at compile time, so new code cannot bring them back.
/// </remarks>
public static class TensorMath
{
    /// <summary>Rooted for the life of the process: never finalized.</summary>
    static readonly Scalar One = 1.ToScalar();

    /// <summary>a + b.</summary>
    public static Tensor Add(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary>a + alpha * b, one kernel.</summary>
    public static Tensor Add(this Tensor a, Tensor b, double alpha)
    {
        using var s = alpha.ToScalar();
        return a.add(b, s);
    }

    /// <summary>a += b.</summary>
    public static Tensor AddInPlace(this Tensor a, Tensor b) => a.add_(b, One);

    /// <summary>a += alpha * b.</summary>
    public static Tensor AddInPlace(this Tensor a, Tensor b, double alpha)
    {
        using var s = alpha.ToScalar();
        return a.add_(b, s);
    }

    /// <summary>a + v.</summary>
    public static Tensor Add(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.add(s, One);
    }

    /// <summary>a += v.</summary>
    public static Tensor AddInPlace(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.add_(s, One);
    }

    /// <summary>a - v.</summary>
    public static Tensor Sub(this Tensor a, double v) => a.Add(-v);

    /// <summary>v - a.</summary>
    public static Tensor RSub(this Tensor a, double v)
    {
        using var negated = a.neg();
        return negated.Add(v);
    }

    /// <summary>a * v.</summary>
    public static Tensor Mul(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.mul(s);
    }

    /// <summary>a *= v.</summary>
    public static Tensor MulInPlace(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.mul_(s);
    }

    /// <summary>a / v.</summary>
    public static Tensor Div(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.div(s);
    }

    /// <summary>a /= v.</summary>
    public static Tensor DivInPlace(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.div_(s);
    }

    /// <summary>a clamped to [min, max].</summary>
    public static Tensor Clamp(this Tensor a, double min, double max)
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return a.clamp(lo, hi);
    }

    /// <summary>a &gt; v, as a bool tensor.</summary>
    public static Tensor Greater(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.gt(s);
    }

    /// <summary>a &gt;= v, as a bool tensor.</summary>
    public static Tensor GreaterOrEqual(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.ge(s);
    }

    /// <summary>max(a, v) elementwise.</summary>
    public static Tensor ClampMin(this Tensor a, double v)
    {
        using var s = v.ToScalar();
        return a.clamp_min(s);
    }

    /// <summary>a += value * t1 * t2.</summary>
    public static Tensor AddcmulInPlace(this Tensor a, Tensor t1, Tensor t2, double value)
    {
        using var s = value.ToScalar();
        return a.addcmul_(t1, t2, s);
    }

    /// <summary>a += value * t1 / t2.</summary>
    public static Tensor AddcdivInPlace(this Tensor a, Tensor t1, Tensor t2, double value)
    {
        using var s = value.ToScalar();
        return a.addcdiv_(t1, t2, s);
    }

    /// <summary>a == v, as a bool tensor.</summary>
    public static Tensor EqualTo(this Tensor a, long v)
    {
        using var s = v.ToScalar();
        return a.eq(s);
    }

    /// <summary>0, 1, …, n - 1.</summary>
    public static Tensor Arange(long n, ScalarType dtype = ScalarType.Int64, Device? device = null)
    {
        using var start = 0L.ToScalar();
        using var stop = n.ToScalar();
        return torch.arange(start, stop, One, dtype, device);
    }

    /// <summary>A tensor of the given shape filled with v.</summary>
    public static Tensor Full(long[] shape, double v, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        using var s = v.ToScalar();
        return torch.full(shape, s, dtype, device);
    }
}
