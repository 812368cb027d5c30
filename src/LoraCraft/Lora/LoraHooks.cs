using LoraCraft.Sampling;

namespace LoraCraft.Lora;

// ComfyUI's LoRA hooks (comfy/hooks.py, the "advanced/hooks" nodes): a LoRA attached to
// conditionings instead of the model. The UNet runs with a hook's LoRA only for the conditionings
// that carry it (others see the model without it), at the hook's strength times the strength of
// its current keyframe; keyframes start at a fraction of the sampling run, in sigma terms, and
// hold for at least their guaranteed number of model calls. A CLIP with hooks encodes with their
// LoRAs at their CLIP strengths, once, or once per keyframe range ("schedule clip").

/// <summary>From <see cref="StartPercent"/> of the run on, the hook runs at <see cref="Strength"/> times its own strength.</summary>
public sealed record HookKeyframe(double Strength, double StartPercent, int GuaranteeSteps = 1);

/// <summary>A hook's keyframes in start order (ComfyUI's HookKeyframeGroup); the object's identity is its schedule state's.</summary>
public sealed class HookKeyframes
{
    HookKeyframes(IReadOnlyList<HookKeyframe> frames) => Frames = frames;

    public static HookKeyframes Empty { get; } = new([]);

    public IReadOnlyList<HookKeyframe> Frames { get; }
    public bool IsEmpty => Frames.Count == 0;

    /// <summary>A new group with <paramref name="keyframe"/> added; equal starts keep the order they were added in.</summary>
    public HookKeyframes Add(HookKeyframe keyframe)
    {
        if (!double.IsFinite(keyframe.Strength) || !double.IsFinite(keyframe.StartPercent) || keyframe.StartPercent < 0 || keyframe.StartPercent > 1)
            throw new UserErrorException($"a hook keyframe needs a finite strength and a start between 0 and 1, got {keyframe.Strength}@{keyframe.StartPercent}");
        return new([.. Frames.Append(keyframe).OrderBy(k => k.StartPercent)]); // OrderBy is stable
    }

    /// <summary>ComfyUI's interpolation methods (InterpolationMethod._LIST).</summary>
    public static IReadOnlyList<string> Methods { get; } = ["linear", "ease_in", "ease_out", "ease_in_out"];

    /// <summary>
    /// <paramref name="length"/> values from <paramref name="from"/> to <paramref name="to"/> by
    /// <paramref name="method"/>, in float32 as ComfyUI computes them (torch.linspace, numpy powers).
    /// </summary>
    public static float[] Interpolate(double from, double to, int length, string method)
    {
        if (length < 1) throw new UserErrorException("interpolation needs at least one value");
        float diff = (float)(to - from);
        float[] index = Linspace(0, 1, length);
        return method switch
        {
            "linear" => Linspace((float)from, (float)to, length),
            "ease_in" => index.Select(i => diff * (i * i) + (float)from).ToArray(),
            "ease_out" => index.Select(i => diff * (1 - (1 - i) * (1 - i)) + (float)from).ToArray(),
            "ease_in_out" => index.Select(i => diff * ((1 - MathF.Cos(i * MathF.PI)) / 2) + (float)from).ToArray(),
            _ => throw new UserErrorException($"unknown interpolation '{method}'; use one of {string.Join(", ", Methods)}"),
        };
    }

    /// <summary>torch.linspace in float32: from the start for the first half, from the end for the rest.</summary>
    static float[] Linspace(float start, float end, int n)
    {
        var v = new float[n];
        if (n == 1) { v[0] = start; return v; }
        float step = (end - start) / (n - 1);
        for (int i = 0; i < n; i++) v[i] = i < n / 2 ? start + step * i : end - step * (n - 1 - i);
        return v;
    }

    /// <summary>
    /// Keyframes spread evenly from <paramref name="startPercent"/> to <paramref name="endPercent"/>
    /// with the given strengths (CreateHookKeyframesInterpolated / FromFloats): the first one is
    /// guaranteed one model call, the others none, added after this group's.
    /// </summary>
    public HookKeyframes AddSpread(IReadOnlyList<float> strengths, double startPercent, double endPercent)
    {
        var percents = Interpolate(startPercent, endPercent, strengths.Count, "linear");
        var group = this;
        for (int i = 0; i < strengths.Count; i++) group = group.Add(new HookKeyframe(strengths[i], percents[i], i == 0 ? 1 : 0));
        return group;
    }
}

/// <summary>One hook: a LoRA with model and CLIP strengths and its keyframes. Clones (new keyframes) keep <see cref="Ref"/>, the hook's identity.</summary>
public sealed class LoraHook
{
    public LoraHook(SelectedLora lora, double strengthModel, double strengthClip)
        : this(lora, strengthModel, strengthClip, HookKeyframes.Empty, new object()) { }

    LoraHook(SelectedLora lora, double strengthModel, double strengthClip, HookKeyframes keyframes, object reference)
    {
        Lora = lora;
        StrengthModel = strengthModel;
        StrengthClip = strengthClip;
        Keyframes = keyframes;
        Ref = reference;
    }

    public SelectedLora Lora { get; }
    public double StrengthModel { get; }
    public double StrengthClip { get; }
    public HookKeyframes Keyframes { get; }
    public object Ref { get; }

    public LoraHook WithKeyframes(HookKeyframes keyframes) => new(Lora, StrengthModel, StrengthClip, keyframes, Ref);
}

/// <summary>A set of hooks (ComfyUI's HookGroup): a hook is in it once (by <see cref="LoraHook.Ref"/>), the first one added wins.</summary>
public sealed class HookGroup
{
    public HookGroup(IEnumerable<LoraHook> hooks)
    {
        var list = new List<LoraHook>();
        foreach (var h in hooks)
            if (!list.Any(x => ReferenceEquals(x.Ref, h.Ref))) list.Add(h);
        Hooks = list;
    }

    public IReadOnlyList<LoraHook> Hooks { get; }

    public LoraHook? Find(object reference) => Hooks.FirstOrDefault(h => ReferenceEquals(h.Ref, reference));

    /// <summary>The hooks of every group given, in order; null when none is given (ComfyUI's combine_all_hooks).</summary>
    public static HookGroup? Combine(params HookGroup?[] groups)
    {
        var present = groups.OfType<HookGroup>().ToList();
        return present.Count switch { 0 => null, 1 => present[0], _ => new HookGroup(present.SelectMany(g => g.Hooks)) };
    }

    /// <summary>Every hook with the same keyframes (one shared schedule), or none.</summary>
    public HookGroup WithKeyframes(HookKeyframes keyframes) => new(Hooks.Select(h => h.WithKeyframes(keyframes)));

    /// <summary>Whether both hold the same hooks with the same keyframes (conditionings that can share UNet calls).</summary>
    public static bool Same(HookGroup? a, HookGroup? b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a is null || b is null || a.Hooks.Count != b.Hooks.Count) return false;
        return a.Hooks.All(h => b.Find(h.Ref) is { } o && ReferenceEquals(o.Keyframes, h.Keyframes));
    }

    /// <summary>
    /// The ranges of the run over which the CLIP strengths are constant, each with the keyframe
    /// every hook is at (null: none, strength 1) — ComfyUI's get_hooks_for_clip_schedule, for
    /// encoding a prompt once per range.
    /// </summary>
    public IReadOnlyList<(double Start, double End, IReadOnlyList<(LoraHook Hook, HookKeyframe? Keyframe)> Hooks)> ClipSchedule()
    {
        var perHook = new List<(LoraHook Hook, List<(double Start, double End, HookKeyframe? Kf)> Ranges)>();
        foreach (var hook in Hooks)
        {
            var ranges = new List<(double, double, HookKeyframe?)>();
            var frames = hook.Keyframes.Frames;
            if (frames.Count == 0) ranges.Add((0.0, 1.0, null));
            else
            {
                var prev = frames[0];
                foreach (var kf in frames)
                {
                    if (kf.StartPercent > prev.StartPercent && !Close(kf.Strength, prev.Strength))
                    {
                        ranges.Add((prev.StartPercent, kf.StartPercent, prev));
                        prev = kf;
                    }
                    else if (kf.StartPercent == prev.StartPercent) prev = kf;
                }
                if (!Close(prev.StartPercent, 1.0)) ranges.Add((prev.StartPercent, 1.0, prev));
            }
            perHook.Add((hook, ranges));
        }
        var bounds = perHook.SelectMany(p => p.Ranges.SelectMany(r => new[] { r.Start, r.End })).Append(0.0).Distinct().Order().ToList();
        var result = new List<(double, double, IReadOnlyList<(LoraHook, HookKeyframe?)>)>();
        for (int i = 0; i + 1 < bounds.Count; i++)
        {
            double s = bounds[i], e = bounds[i + 1];
            var at = perHook.Select(p => (p.Hook, p.Ranges.Where(r => r.Start < e && r.End > s).Select(r => r.Kf).FirstOrDefault())).ToList();
            result.Add((s, e, at));
        }
        return result;
    }

    static bool Close(double a, double b) => Math.Abs(a - b) <= 1e-9 * Math.Max(Math.Abs(a), Math.Abs(b));
}

/// <summary>What sampling asks of the hooks: a new run, and the weights for the conditionings that carry <c>hooks</c> at <c>sigma</c>.</summary>
public interface IConditionHooks
{
    void Begin(float maxSigma);
    void Use(HookGroup? hooks, float sigma);
}

/// <summary>
/// A keyframe schedule's position during one run (HookKeyframeGroup.prepare_current_keyframe):
/// at each new sigma, once the current keyframe has had its guaranteed calls, it moves to the
/// latest following keyframe that has started (start sigma ≥ the current sigma), stopping at one
/// that guarantees calls. Keyframes that start before the run's first sigma guarantee none.
/// </summary>
public sealed class HookKeyframeState(HookKeyframes keyframes)
{
    readonly float[] _startSigma = keyframes.Frames.Select(k => NoiseSchedule.Default.PercentToSigma(k.StartPercent)).ToArray();
    int _index;
    int _used;
    float _sigma = -1;

    public double Strength => keyframes.IsEmpty ? 1.0 : keyframes.Frames[_index].Strength;

    public void Reset()
    {
        _index = 0;
        _used = 0;
        _sigma = -1;
    }

    public void Prepare(float sigma, float maxSigma)
    {
        if (keyframes.IsEmpty || sigma == _sigma) return;
        if (_used >= Guaranteed(_index, maxSigma))
        {
            for (int i = _index + 1; i < _startSigma.Length; i++)
            {
                if (_startSigma[i] < sigma) break;
                _index = i;
                _used = 0;
                if (Guaranteed(i, maxSigma) > 0) break;
            }
        }
        _used++;
        _sigma = sigma;
    }

    int Guaranteed(int i, float maxSigma) => _startSigma[i] > maxSigma ? 0 : keyframes.Frames[i].GuaranteeSteps;

}

/// <summary>
/// The hooks of one sampler run on a <see cref="LoraRun"/>: before the UNet runs for conditionings
/// with hooks G at a sigma, each hook of the run gets its model strength times its keyframe
/// strength if it is in G, else 0 (the run's hook branches, bypassed unless merging was asked).
/// </summary>
public sealed class HookRun : IConditionHooks
{
    readonly LoraRun _run;
    readonly IReadOnlyList<LoraHook> _hooks;
    readonly Dictionary<HookKeyframes, HookKeyframeState> _states = new(ReferenceEqualityComparer.Instance);
    float _maxSigma;

    /// <param name="hooks">the hooks in the order of the run's hook applications</param>
    public HookRun(LoraRun run, IReadOnlyList<LoraHook> hooks)
    {
        if (hooks.Count != run.HookCount) throw new ArgumentException("one hook per hook application of the run", nameof(hooks));
        _run = run;
        _hooks = hooks;
    }

    public void Begin(float maxSigma)
    {
        _maxSigma = maxSigma;
        foreach (var s in _states.Values) s.Reset();
    }

    public void Use(HookGroup? hooks, float sigma)
    {
        var strengths = new double[_hooks.Count];
        for (int i = 0; i < _hooks.Count; i++)
        {
            if (hooks?.Find(_hooks[i].Ref) is not { } hook) continue;
            if (!_states.TryGetValue(hook.Keyframes, out var state)) _states[hook.Keyframes] = state = new HookKeyframeState(hook.Keyframes);
            state.Prepare(sigma, _maxSigma);
            strengths[i] = hook.StrengthModel * state.Strength;
        }
        _run.SetHookStrengths(strengths);
    }
}
