using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Training;

/// <summary>Parameters sharing one learning rate (kohya: the text encoder group and the UNet group).</summary>
public sealed record ParameterGroup(string Name, IReadOnlyList<Tensor> Parameters, double LearningRate);

/// <summary>The optimizers written here; kohya's `--optimizer_type` names.</summary>
public enum OptimizerKind { AdamW, AdamW8bit }

/// <summary>An optimizer over parameter groups; its state can be saved and restored exactly (resume).</summary>
public abstract class Optimizer : IDisposable
{
    protected Optimizer(IReadOnlyList<ParameterGroup> groups) => Groups = groups;

    public IReadOnlyList<ParameterGroup> Groups { get; }
    /// <summary>Optimizer steps taken so far.</summary>
    public long StepCount { get; protected set; }
    /// <summary>kohya's `ss_optimizer` value.</summary>
    public abstract string MetadataName { get; }

    /// <summary>One update; <paramref name="lrScale"/> is the schedule's factor on each group's base rate.</summary>
    public abstract void Step(double lrScale);

    /// <summary>Drops the gradients (torch's zero_grad(set_to_none=True)): a parameter that gets none next step is not updated.</summary>
    public void ZeroGrad()
    {
        foreach (var p in Groups.SelectMany(g => g.Parameters))
            if (p.grad is { } g) { g.Dispose(); p.grad = null!; }
    }

    /// <summary>Every state tensor by a stable name, plus the step count, for a resumable save.</summary>
    public abstract Dictionary<string, Tensor> State();
    public abstract void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount);
    public abstract void Dispose();

    public static Optimizer Create(OptimizerKind kind, IReadOnlyList<ParameterGroup> groups, AdamWSettings settings) => kind switch
    {
        OptimizerKind.AdamW => new AdamW(groups, settings),
        _ => new AdamW8bit(groups, settings),
    };

    /// <summary>Scales every gradient so their joint L2 norm is at most <paramref name="maxNorm"/>; returns the norm before.</summary>
    public static double ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var grads = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToList();
        if (grads.Count == 0) return 0;
        var norms = torch.stack(grads.Select(g => g.to(ScalarType.Float32).norm()).ToArray());
        double total = norms.norm().item<float>();
        // torch.nn.utils.clip_grad_norm_: coefficient max / (norm + 1e-6), never above 1
        double coef = maxNorm / (total + 1e-6);
        if (coef < 1) foreach (var g in grads) g.MulInPlace(coef);
        return total;
    }
}

/// <summary>Adam hyper-parameters; the defaults are torch's AdamW (kohya passes no arguments).</summary>
public sealed record AdamWSettings(double Beta1 = 0.9, double Beta2 = 0.999, double Eps = 1e-8, double WeightDecay = 0.01);

/// <summary>
/// torch.optim.AdamW, step for step: decoupled weight decay p *= 1 - lr*wd, then
/// m = b1 m + (1-b1) g, v = b2 v + (1-b2) g², p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
/// </summary>
public sealed class AdamW : Optimizer
{
    readonly AdamWSettings _s;
    readonly Dictionary<Tensor, (Tensor M, Tensor V)> _state = new(ReferenceEqualityComparer.Instance);

    public AdamW(IReadOnlyList<ParameterGroup> groups, AdamWSettings? settings = null) : base(groups) => _s = settings ?? new();

    public override string MetadataName => "torch.optim.adamw.AdamW" + SettingsText(_s);

    internal static string SettingsText(AdamWSettings s) =>
        s == new AdamWSettings() ? "" : FormattableString.Invariant($"(betas=({s.Beta1}, {s.Beta2}),eps={s.Eps},weight_decay={s.WeightDecay})");

    public override void Step(double lrScale)
    {
        using var noGrad = torch.no_grad();
        StepCount++;
        double bc1 = 1 - Math.Pow(_s.Beta1, StepCount), bc2 = 1 - Math.Pow(_s.Beta2, StepCount);
        foreach (var group in Groups)
        {
            double lr = group.LearningRate * lrScale;
            foreach (var p in group.Parameters)
            {
                using var grad = p.grad;
                if (grad is null) continue;
                using var scope = NewDisposeScope();
                if (!_state.TryGetValue(p, out var st))
                    _state[p] = st = (torch.zeros_like(p).DetachFromDisposeScope(), torch.zeros_like(p).DetachFromDisposeScope());
                p.MulInPlace(1 - lr * _s.WeightDecay);
                st.M.lerp_(grad, 1 - _s.Beta1);
                st.V.MulInPlace(_s.Beta2).AddcmulInPlace(grad, grad, 1 - _s.Beta2);
                var denom = st.V.sqrt().Div(Math.Sqrt(bc2)).AddInPlace(_s.Eps);
                p.AddcdivInPlace(st.M, denom, -(lr / bc1));
            }
        }
    }

    IEnumerable<(string Name, Tensor P)> Named() =>
        Groups.SelectMany(g => g.Parameters.Select((p, i) => ($"{g.Name}.{i}", p)));

    public override Dictionary<string, Tensor> State()
    {
        var d = new Dictionary<string, Tensor>();
        foreach (var (name, p) in Named())
            if (_state.TryGetValue(p, out var st)) { d[name + ".exp_avg"] = st.M; d[name + ".exp_avg_sq"] = st.V; }
        return d;
    }

    public override void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        StepCount = stepCount;
        foreach (var (name, p) in Named())
            if (state.TryGetValue(name + ".exp_avg", out var m) && state.TryGetValue(name + ".exp_avg_sq", out var v))
                _state[p] = (m.to(ScalarType.Float32).clone().DetachFromDisposeScope(), v.to(ScalarType.Float32).clone().DetachFromDisposeScope());
    }

    public override void Dispose()
    {
        foreach (var (m, v) in _state.Values) { m.Dispose(); v.Dispose(); }
        _state.Clear();
    }
}

/// <summary>
/// AdamW with both moments kept in 8 bits (bitsandbytes' AdamW8bit idea, in plain torch, no native
/// library): each state tensor is cut into blocks of 256 values, stored as one byte per value —
/// the index of the nearest entry of a 256-value code book spaced logarithmically from 1e-7 to 1
/// (signed for m, unsigned for v) — times the block's absolute maximum in float32. Each step
/// dequantizes, applies exactly the AdamW update, and quantizes again: state memory is a quarter.
/// </summary>
public sealed class AdamW8bit : Optimizer
{
    public const int BlockSize = 256;
    readonly AdamWSettings _s;
    readonly Dictionary<Tensor, QState> _state = new(ReferenceEqualityComparer.Instance);
    readonly Tensor _signedMap, _unsignedMap, _signedMid, _unsignedMid;

    sealed record QState(Tensor MCodes, Tensor MMax, Tensor VCodes, Tensor VMax);

    public AdamW8bit(IReadOnlyList<ParameterGroup> groups, AdamWSettings? settings = null) : base(groups)
    {
        _s = settings ?? new();
        _signedMap = CodeBook(signed: true).DetachFromDisposeScope();
        _unsignedMap = CodeBook(signed: false).DetachFromDisposeScope();
        _signedMid = Midpoints(_signedMap).DetachFromDisposeScope();
        _unsignedMid = Midpoints(_unsignedMap).DetachFromDisposeScope();
    }

    public override string MetadataName => "loracraft.AdamW8bit" + AdamW.SettingsText(_s);

    /// <summary>256 sorted code values: 0 and log-spaced magnitudes 1e-7..1 (both signs for m).</summary>
    internal static Tensor CodeBook(bool signed)
    {
        var values = new List<float> { 0f };
        int positive = signed ? 128 : 255;
        for (int i = 0; i < positive; i++) values.Add((float)Math.Pow(10, -7 + 7.0 * i / (positive - 1)));
        if (signed) for (int i = 0; i < 127; i++) values.Add(-values[2 + i]);
        values.Sort();
        return torch.tensor(values.ToArray());
    }

    static Tensor Midpoints(Tensor map) => map[1..].Add(map[..^1]).Div(2);

    /// <summary>Codes and per-block maxima of <paramref name="x"/>.</summary>
    internal static (Tensor Codes, Tensor Max) Quantize(Tensor x, Tensor midpoints)
    {
        using var scope = NewDisposeScope();
        long n = x.numel(), blocks = (n + BlockSize - 1) / BlockSize;
        var flat = torch.nn.functional.pad(x.flatten(), [0, blocks * BlockSize - n]).view(blocks, BlockSize);
        var max = flat.abs().amax([1], keepdim: true).ClampMin(1e-30f);
        var codes = torch.bucketize(flat / max, midpoints).to(ScalarType.Byte);
        return (codes.MoveToOuterDisposeScope(), max.MoveToOuterDisposeScope());
    }

    internal static Tensor Dequantize(Tensor codes, Tensor max, Tensor map, long[] shape)
    {
        using var scope = NewDisposeScope();
        long n = shape.Aggregate(1L, (a, b) => a * b);
        var values = map.index_select(0, codes.flatten().to(ScalarType.Int64)).view(codes.shape) * max;
        return values.flatten()[..(int)n].view(shape).MoveToOuterDisposeScope();
    }

    public override void Step(double lrScale)
    {
        using var noGrad = torch.no_grad();
        StepCount++;
        double bc1 = 1 - Math.Pow(_s.Beta1, StepCount), bc2 = 1 - Math.Pow(_s.Beta2, StepCount);
        foreach (var group in Groups)
        {
            double lr = group.LearningRate * lrScale;
            foreach (var p in group.Parameters)
            {
                using var grad = p.grad;
                if (grad is null) continue;
                using var scope = NewDisposeScope();
                Tensor m, v;
                if (_state.TryGetValue(p, out var st))
                {
                    m = Dequantize(st.MCodes, st.MMax, _signedMap, p.shape);
                    v = Dequantize(st.VCodes, st.VMax, _unsignedMap, p.shape);
                    foreach (var t in new[] { st.MCodes, st.MMax, st.VCodes, st.VMax }) t.Dispose();
                }
                else
                {
                    m = torch.zeros_like(p);
                    v = torch.zeros_like(p);
                }
                p.MulInPlace(1 - lr * _s.WeightDecay);
                m.lerp_(grad, 1 - _s.Beta1);
                v.MulInPlace(_s.Beta2).AddcmulInPlace(grad, grad, 1 - _s.Beta2);
                var denom = v.sqrt().Div(Math.Sqrt(bc2)).AddInPlace(_s.Eps);
                p.AddcdivInPlace(m, denom, -(lr / bc1));
                var (mc, mm) = Quantize(m, _signedMid);
                var (vc, vm) = Quantize(v, _unsignedMid);
                _state[p] = new QState(mc.DetachFromDisposeScope(), mm.DetachFromDisposeScope(), vc.DetachFromDisposeScope(), vm.DetachFromDisposeScope());
            }
        }
    }

    IEnumerable<(string Name, Tensor P)> Named() =>
        Groups.SelectMany(g => g.Parameters.Select((p, i) => ($"{g.Name}.{i}", p)));

    public override Dictionary<string, Tensor> State()
    {
        var d = new Dictionary<string, Tensor>();
        foreach (var (name, p) in Named())
            if (_state.TryGetValue(p, out var st))
            {
                d[name + ".exp_avg.codes"] = st.MCodes;
                d[name + ".exp_avg.absmax"] = st.MMax;
                d[name + ".exp_avg_sq.codes"] = st.VCodes;
                d[name + ".exp_avg_sq.absmax"] = st.VMax;
            }
        return d;
    }

    public override void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        StepCount = stepCount;
        foreach (var (name, p) in Named())
            if (state.TryGetValue(name + ".exp_avg.codes", out var mc) && state.TryGetValue(name + ".exp_avg.absmax", out var mm)
                && state.TryGetValue(name + ".exp_avg_sq.codes", out var vc) && state.TryGetValue(name + ".exp_avg_sq.absmax", out var vm))
                _state[p] = new QState(mc.clone().DetachFromDisposeScope(), mm.clone().DetachFromDisposeScope(),
                                       vc.clone().DetachFromDisposeScope(), vm.clone().DetachFromDisposeScope());
    }

    public override void Dispose()
    {
        foreach (var st in _state.Values)
            foreach (var t in new[] { st.MCodes, st.MMax, st.VCodes, st.VMax }) t.Dispose();
        _state.Clear();
        foreach (var t in new[] { _signedMap, _unsignedMap, _signedMid, _unsignedMid }) t.Dispose();
    }
}
