using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Tools;

/// <summary>How many singular values to keep: a fixed rank, or kohya's dynamic rules (capped at the rank).</summary>
public enum RankMethod { Fixed, SvRatio, SvFro, SvCumulative }

public sealed record RankRule(int Rank, RankMethod Method = RankMethod.Fixed, double Param = 0)
{
    public static RankMethod ParseMethod(string name) => name switch
    {
        "sv_ratio" => RankMethod.SvRatio,
        "sv_fro" => RankMethod.SvFro,
        "sv_cumulative" => RankMethod.SvCumulative,
        _ => throw new UserErrorException($"dynamic method must be sv_ratio, sv_fro or sv_cumulative, got '{name}'"),
    };
}

/// <summary>One update factored: up [out, r] (singular values folded in), down [r, in], and how much of it was kept.</summary>
public sealed record Factored(Tensor Up, Tensor Down, int Rank, double FroRetained, double SumRetained) : IDisposable
{
    public void Dispose()
    {
        Up.Dispose();
        Down.Dispose();
    }
}

/// <summary>
/// The SVD factoring kohya's resize_lora and extract_lora_from_models do: full SVD of the
/// [out, in·k·k] matrix (float32), the first r singular triplets with S folded into up, the
/// dynamic rank rules (sv_ratio: singular values above max/param; sv_fro: the smallest rank whose
/// Frobenius share reaches param; sv_cumulative: the same on the plain sum), a zero matrix as
/// rank 1, and optionally the quantile clamp of extraction.
/// </summary>
public static class LowRank
{
    const double MinSv = 1e-6;

    public static Factored Factor(Tensor matrix, RankRule rule, double? clampQuantile = null)
    {
        using var scope = NewDisposeScope();
        var m = matrix.to(ScalarType.Float32).reshape(matrix.shape[0], -1);
        var (u, s, vh) = torch.linalg.svd(m, fullMatrices: false);
        var sv = s.data<float>().ToArray();
        int rank = Math.Min(NewRank(sv, rule), sv.Length);
        double total2 = sv.Sum(x => (double)x * x), kept2 = sv.Take(rank).Sum(x => (double)x * x);
        double total = sv.Sum(x => (double)Math.Abs(x)), kept = sv.Take(rank).Sum(x => (double)Math.Abs(x));
        var up = u[.., ..rank] * s[..rank].unsqueeze(0);
        var down = vh[..rank, ..];
        if (clampQuantile is { } q && q < 1)
        {
            var hi = torch.quantile(torch.cat([up.flatten(), down.flatten()]), torch.tensor((float)q)).item<float>();
            up = up.Clamp(-hi, hi);
            down = down.Clamp(-hi, hi);
        }
        return new Factored(up.contiguous().MoveToOuterDisposeScope(), down.contiguous().MoveToOuterDisposeScope(), rank,
                            total2 > 0 ? Math.Sqrt(kept2 / total2) : 1, total > 0 ? kept / total : 1);
    }

    /// <summary>kohya's rank_resize: the dynamic index + 1, capped at the rule's rank; 1 for a zero matrix.</summary>
    public static int NewRank(float[] s, RankRule rule)
    {
        if (s.Length == 0 || s[0] <= MinSv) return 1;
        int rank = rule.Method switch
        {
            RankMethod.SvRatio => Math.Clamp(s.Count(x => x > s[0] / rule.Param) - 1, 0, s.Length - 1) + 1,
            RankMethod.SvFro => SearchSorted(Cumulative(s.Select(x => (double)x * x)), rule.Param * rule.Param, s.Length) + 1,
            RankMethod.SvCumulative => SearchSorted(Cumulative(s.Select(x => (double)x)), rule.Param, s.Length) + 1,
            _ => rule.Rank,
        };
        return Math.Min(rank, rule.Rank);
    }

    static double[] Cumulative(IEnumerable<double> values)
    {
        var list = values.ToArray();
        double sum = list.Sum(), run = 0;
        return list.Select(v => (run += v) / sum).ToArray();
    }

    /// <summary>torch.searchsorted (left): the first index whose value is at least <paramref name="target"/>, clamped into range.</summary>
    static int SearchSorted(double[] sorted, double target, int length)
    {
        int i = 0;
        while (i < sorted.Length && sorted[i] < target) i++;
        return Math.Clamp(i, 0, length - 1);
    }
}
