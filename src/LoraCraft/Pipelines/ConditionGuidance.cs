using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Sampling;
using LoraCraft.Text;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Pipelines;

/// <summary>One conditioning of a ComfyUI CONDITIONING list, with the properties sampling reads.</summary>
public sealed record GuidedCondition(Conditioning Conditioning)
{
    /// <summary>Where it applies, [B or 1,(1,)H,W] at any size (bilinear to the latent); null: everywhere.</summary>
    public Tensor? Mask { get; init; }
    public double MaskStrength { get; init; } = 1;
    /// <summary>Run the model on the mask's bounding box only (ComfyUI's set_cond_area "mask bounds").</summary>
    public bool MaskBounds { get; init; }
    /// <summary>Its weight where several conditionings overlap (ConditioningSetAreaStrength).</summary>
    public double Strength { get; init; } = 1;
    /// <summary>The part of the run it is used in (ConditioningSetTimestepRange, hook nodes' timesteps).</summary>
    public double StartPercent { get; init; }
    public double EndPercent { get; init; } = 1;
    /// <summary>The part of the run a scheduled CLIP encoding was made for (SetClipHooks with schedule_clip).</summary>
    public (double Start, double End)? ClipRange { get; init; }
    /// <summary>Used only where the other conditionings of its side leave weight (the "default" of ConditioningSetDefaultCombine).</summary>
    public bool Default { get; init; }
    /// <summary>LoRA hooks the UNet runs with for this conditioning.</summary>
    public HookGroup? Hooks { get; init; }
}

/// <summary>
/// ComfyUI's guided model call over CONDITIONING lists (samplers.py calc_cond_batch and
/// cfg_function): at each sigma, the conditionings in range each give a denoised estimate on
/// their area, weighted by mask × strength; a side's estimate is Σ weight · estimate / Σ weight;
/// default conditionings fill what the others leave (1 − Σ weight, at least 0); conditionings
/// with the same hooks and area share UNet batches, each batch run with its hooks' weights. The
/// result is uncond + (cond − uncond) · cfg, without the negative side when cfg is 1. With one
/// plain conditioning per side this is exactly <see cref="Guidance"/>'s single-prompt call.
/// </summary>
public sealed class ConditionGuidance : IGuidance, IDisposable
{
    readonly StableDiffusionModel _model;
    readonly double _cfg;
    readonly IReadOnlyList<GuidedCondition> _positive, _negative;
    readonly Tensor? _timeIds;
    readonly IConditionHooks? _hooks;
    readonly Dictionary<GuidedCondition, Tensor> _contexts = new(ReferenceEqualityComparer.Instance);
    readonly Dictionary<GuidedCondition, (Tensor? Mask, Area Area)> _masks = new(ReferenceEqualityComparer.Instance);
    long _item;
    (long H, long W) _maskSize;

    readonly record struct Area(long H, long W, long Y, long X);
    sealed record Row(GuidedCondition Cond, bool Positive, Area Area, Tensor Mult);

    public ConditionGuidance(StableDiffusionModel model, double cfg, IReadOnlyList<GuidedCondition> positive, IReadOnlyList<GuidedCondition> negative,
                             int width, int height, IConditionHooks? hooks = null)
    {
        if (positive.Count == 0) throw new UserErrorException("the positive conditioning is empty");
        if (hooks is null && positive.Concat(negative).Any(c => c.Hooks is not null))
            throw new ArgumentException("conditionings carry hooks but no hook run was given", nameof(hooks));
        _model = model;
        _cfg = cfg;
        _positive = positive;
        _negative = negative;
        _hooks = hooks;
        _timeIds = model.Family == ModelFamily.Sdxl ? torch.tensor(new float[] { height, width, 0, 0, height, width }).unsqueeze(0).DetachFromDisposeScope() : null;
    }

    /// <summary>Whether cfg counts as 1 (math.isclose), when ComfyUI skips the negative side.</summary>
    public static bool SkipsNegative(double cfg) => Math.Abs(cfg - 1.0) <= 1e-9 * Math.Max(1.0, Math.Abs(cfg));

    public void BeginItem(long item, float[] sigmas)
    {
        _item = item;
        ClearMasks();
        _hooks?.Begin(sigmas.Max());
    }

    public Tensor Denoise(Tensor x, float sigma, NoiseSchedule schedule, InpaintConcat? concat, int step = 1)
    {
        using var scope = NewDisposeScope();
        long h = x.shape[2], w = x.shape[3];
        if (_maskSize != (h, w)) ClearMasks();
        _maskSize = (h, w);
        bool useNegative = !SkipsNegative(_cfg);
        var full = new Area(h, w, 0, 0);
        var rows = new List<Row>();
        var defaults = new List<(GuidedCondition Cond, bool Positive)>();
        foreach (var (list, positive) in new[] { (_positive, true), (_negative, false) })
        {
            if (!positive && !useNegative) continue;
            foreach (var c in list)
            {
                if (!Active(c, sigma, schedule)) continue;
                if (c.Default) defaults.Add((c, positive));
                else rows.Add(MakeRow(c, positive, x));
            }
        }
        foreach (var (c, positive) in defaults)
        {
            var room = ones_like(x);
            foreach (var r in rows.Where(r => r.Positive == positive)) Region(room, r.Area).AddInPlace(r.Mult, -1);
            room = F.relu(room);
            if (room.max().item<float>() == 0) continue;
            rows.Add(new Row(c, positive, full, room));
        }

        var sums = new[] { zeros_like(x), zeros_like(x) };
        var counts = new[] { TensorMath.Full(x.shape, 1e-37f), TensorMath.Full(x.shape, 1e-37f) };
        var pending = rows.ToList();
        while (pending.Count > 0)
        {
            var first = pending[0];
            var batch = new List<Row>();
            foreach (var r in pending)
                if (HookGroup.Same(r.Cond.Hooks, first.Cond.Hooks) && r.Area == first.Area && Concatable([.. batch.Select(b => b.Cond), r.Cond]))
                    batch.Add(r);
            foreach (var r in batch) pending.Remove(r);
            _hooks?.Use(first.Cond.Hooks, sigma);
            var output = Run(batch, x, sigma, schedule, concat);
            for (int k = 0; k < batch.Count; k++)
            {
                int side = batch[k].Positive ? 0 : 1;
                Region(sums[side], batch[k].Area).AddInPlace(output.narrow(0, k, 1) * batch[k].Mult);
                Region(counts[side], batch[k].Area).AddInPlace(batch[k].Mult);
            }
        }
        var cond = sums[0].div(counts[0]);
        var uncond = sums[1].div(counts[1]);
        return uncond.Add((cond - uncond).Mul(_cfg)).MoveToOuterDisposeScope();
    }

    static bool Active(GuidedCondition c, float sigma, NoiseSchedule schedule)
    {
        double start = c.StartPercent, end = c.EndPercent;
        if (c.ClipRange is { } clip) (start, end) = (Math.Max(clip.Start, start), Math.Min(clip.End, end));
        return !(sigma > schedule.PercentToSigma(start)) && !(sigma < schedule.PercentToSigma(end));
    }

    static Tensor Region(Tensor t, Area a) => t.narrow(2, a.Y, a.H).narrow(3, a.X, a.W);

    Row MakeRow(GuidedCondition c, bool positive, Tensor x)
    {
        long channels = x.shape[1];
        var (mask, area) = ResolveMask(c, x.shape[2], x.shape[3]);
        var mult = mask is null
            ? TensorMath.Full([1, channels, area.H, area.W], (float)c.Strength)
            : Region(mask, area).Mul(c.MaskStrength).expand(1, channels, -1, -1).Mul(c.Strength);
        return new Row(c, positive, area, mult);
    }

    /// <summary>The conditioning's mask for this batch item at the latent's size, and its area (ComfyUI's resolve_areas_and_cond_masks).</summary>
    (Tensor? Mask, Area Area) ResolveMask(GuidedCondition c, long h, long w)
    {
        if (_masks.TryGetValue(c, out var known)) return known;
        var full = new Area(h, w, 0, 0);
        if (c.Mask is null) return _masks[c] = (null, full);
        using var scope = NewDisposeScope();
        var all = c.Mask.to(ScalarType.Float32);
        if (all.dim() == 2) all = all.unsqueeze(0);
        if (all.dim() == 3) all = all.unsqueeze(1);
        if (all.shape[2] != h || all.shape[3] != w) all = F.interpolate(all, [h, w], mode: InterpolationMode.Bilinear, align_corners: false);
        var area = full;
        if (c.MaskBounds)
        {
            var bounds = all.abs().amax([0, 1]);
            var ys = bounds.amax([1]).nonzero();
            var xs = bounds.amax([0]).nonzero();
            if (ys.shape[0] == 0) area = new Area(Math.Min(8, h), Math.Min(8, w), 0, 0);
            else
            {
                long y0 = ys[0, 0].item<long>(), y1 = ys[-1, 0].item<long>(), x0 = xs[0, 0].item<long>(), x1 = xs[-1, 0].item<long>();
                // at least 8 latent pixels a side, as ComfyUI; its slices stop at the edge
                long ah = Math.Max(8, y1 - y0 + 1), aw = Math.Max(8, x1 - x0 + 1);
                area = new Area(Math.Min(ah, h - y0), Math.Min(aw, w - x0), y0, x0);
            }
        }
        var mask = all.narrow(0, Math.Min(_item, all.shape[0] - 1), 1).contiguous().DetachFromDisposeScope();
        return _masks[c] = (mask, area);
    }

    void ClearMasks()
    {
        foreach (var (m, _) in _masks.Values) m?.Dispose();
        _masks.Clear();
    }

    /// <summary>ComfyUI's CONDCrossAttn.can_concat: contexts of different lengths batch when their lcm is at most 4 × the shorter.</summary>
    static bool Concatable(IReadOnlyList<GuidedCondition> conds)
    {
        var lengths = conds.Select(c => c.Conditioning.Context.shape[1]).Distinct().ToList();
        if (lengths.Count <= 1) return true;
        long lcm = lengths.Aggregate(1L, Lcm);
        return lcm / lengths.Min() <= 4;
    }

    static long Gcd(long a, long b) => b == 0 ? a : Gcd(b, a % b);
    static long Lcm(long a, long b) => a / Gcd(a, b) * b;

    /// <summary>The denoised estimates of a batch of rows on their (common) area.</summary>
    Tensor Run(IReadOnlyList<Row> batch, Tensor x, float sigma, NoiseSchedule schedule, InpaintConcat? concat)
    {
        var area = batch[0].Area;
        long n = batch.Count;
        double s = sigma;
        var crop = Region(x, area);
        var xb = n == 1 ? crop : crop.expand(n, -1, -1, -1);
        var input = xb.Mul(1 / Math.Sqrt(s * s + 1));
        if (concat is not null)
        {
            var c = area.H == x.shape[2] && area.W == x.shape[3] ? concat : new InpaintConcat(Region(concat.Mask, area), Region(concat.MaskedLatent, area));
            input = c.Concat(input);
        }
        long length = batch.Select(r => r.Cond.Conditioning.Context.shape[1]).Aggregate(1L, Lcm);
        var contexts = batch.Select(r => Context(r.Cond)).Select(ctx => ctx.shape[1] == length ? ctx : ctx.repeat(1, length / ctx.shape[1], 1)).ToArray();
        var context = contexts.Length == 1 ? contexts[0] : torch.cat(contexts, 0);
        Tensor? y = null;
        if (_timeIds is not null)
        {
            var pooled = batch.Select(r => r.Cond.Conditioning.Pooled ?? throw new UserErrorException("an SDXL conditioning has no pooled output")).ToArray();
            var p = pooled.Length == 1 ? pooled[0] : torch.cat(pooled, 0);
            y = _model.UNet.SdxlVector(p, _timeIds.expand(p.shape[0], -1)).to(_model.DType, _model.UNet.Device);
        }
        var t = TensorMath.Full([n], (float)schedule.Timestep(sigma));
        return Guidance.Denoised(_model, xb, _model.UNet.Forward(input, t, context, y), s);
    }

    /// <summary>A conditioning's context in the UNet's dtype and device, converted once.</summary>
    Tensor Context(GuidedCondition c)
    {
        if (!_contexts.TryGetValue(c, out var ctx))
        {
            ctx = c.Conditioning.Context.to(_model.DType, _model.UNet.Device);
            if (ReferenceEquals(ctx, c.Conditioning.Context)) ctx = ctx.alias();
            _contexts[c] = ctx = ctx.DetachFromDisposeScope();
        }
        return ctx;
    }

    public void Dispose()
    {
        foreach (var c in _contexts.Values) c.Dispose();
        _contexts.Clear();
        ClearMasks();
        _timeIds?.Dispose();
    }
}
