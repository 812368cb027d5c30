using System.Globalization;

namespace LoraCraft.Lora;

/// <summary>
/// A LoRA strength over the sampling steps, sd-webui-loractl's `weight@step` keyframes:
/// `0@0,1@0.5` (commas or semicolons between keyframes) starts at 0 and reaches 1 halfway,
/// linear in between and flat beyond the first and last keyframes (numpy's interp); a keyframe
/// without `@` sits at 1. When no position is above 1 the positions are fractions of the run,
/// else step numbers. As loractl computes it, sampling step i (0-based) of n is at fraction
/// i / (n − 2) — 1.0 is reached at the second-to-last step — and at step number i.
/// </summary>
public sealed class StrengthSchedule
{
    StrengthSchedule(IReadOnlyList<(double Weight, double At)> keyframes) => Keyframes = keyframes;

    /// <summary>(weight, position) sorted by position.</summary>
    public IReadOnlyList<(double Weight, double At)> Keyframes { get; }
    public bool Fractional => Keyframes[^1].At <= 1;
    public bool Varies => Keyframes.Select(k => k.Weight).Distinct().Count() > 1;

    public static StrengthSchedule Of(IEnumerable<(double Weight, double At)> keyframes)
    {
        var list = keyframes.OrderBy(k => k.At).ToList();
        if (list.Count == 0) throw new UserErrorException("a strength schedule needs at least one keyframe");
        foreach (var (w, at) in list)
            if (!double.IsFinite(w) || !double.IsFinite(at) || at < 0)
                throw new UserErrorException($"keyframe {Num(w)}@{Num(at)}: weights must be numbers and positions 0 or more");
        return new StrengthSchedule(list);
    }

    /// <summary>Whether <paramref name="text"/> is a keyframe list (has an `@`); a plain number is not.</summary>
    public static bool Looks(string text) => text.Contains('@');

    /// <summary>Parses `w@s,w@s;…`; throws <see cref="UserErrorException"/> naming <paramref name="where"/>.</summary>
    public static StrengthSchedule Parse(string text, string where)
    {
        var frames = new List<(double, double)>();
        foreach (var item in text.Split([',', ';'], StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = item.Split('@');
            if (parts.Length > 2 || !TryNumber(parts[0], out var w) || parts.Length == 2 && !TryNumber(parts[1], out _))
                throw new UserErrorException($"{where}: '{item}' is not a weight@step keyframe");
            frames.Add((w, parts.Length == 2 ? double.Parse(parts[1], CultureInfo.InvariantCulture) : 1.0));
        }
        return Of(frames);
    }

    /// <summary>The strength at 0-based sampling step <paramref name="step"/> of <paramref name="steps"/>.</summary>
    public double At(int step, int steps)
    {
        double x = Fractional ? step / (double)Math.Max(1, steps - 2) : step;
        if (x <= Keyframes[0].At) return Keyframes[0].Weight;
        for (int i = 1; i < Keyframes.Count; i++)
        {
            var (w1, x1) = Keyframes[i];
            if (x < x1)
            {
                var (w0, x0) = Keyframes[i - 1];
                return w0 + (w1 - w0) * (x - x0) / (x1 - x0);
            }
        }
        return Keyframes[^1].Weight;
    }

    public override string ToString() => string.Join(",", Keyframes.Select(k => $"{Num(k.Weight)}@{Num(k.At)}"));

    static bool TryNumber(string s, out double v) => double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out v);
    static string Num(double v) => v.ToString("0.####", CultureInfo.InvariantCulture);
}

/// <summary>
/// sd-webui-lora-block-weight's `start=` / `stop=` (or `step=START-STOP`): the UNet part runs
/// from 1-based step START and stops at step STOP; a value in (0, 1) is a fraction of the steps
/// (round(f · steps), at least 1).
/// </summary>
public sealed record StepRange(double? Start, double? Stop)
{
    public bool Contains(int step, int steps)
    {
        int? Resolve(double? v) => v is not { } x ? null : x > 0 && x < 1 ? Math.Max(1, (int)Math.Round(x * steps, MidpointRounding.ToEven)) : (int)x;
        // as the extension checks it: on from sampling step start − 1 (0-based), off from stop − 1
        return (Resolve(Start) is not { } s || step >= s - 1) && (Resolve(Stop) is not { } e || step < e - 1);
    }

    public override string ToString() => string.Join(":", new[]
    {
        Start is { } s ? "start=" + s.ToString("0.####", CultureInfo.InvariantCulture) : null,
        Stop is { } e ? "stop=" + e.ToString("0.####", CultureInfo.InvariantCulture) : null,
    }.OfType<string>());
}
