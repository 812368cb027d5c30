namespace LoraCraft.Lora;

/// <summary>
/// How adapters are applied: merged into the weights (cheapest per step once applied), beside
/// the layers (bypass: the weights stay untouched), or auto — merged, except the UNet part of a
/// LoRA whose strength changes over the steps, which runs in bypass (cheaper than re-merging its
/// layers at every step; see the README figures).
/// </summary>
public enum LoraMode { Auto, Merge, Bypass }

public static class LoraModes
{
    public static LoraMode Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => LoraMode.Auto,
        "merge" => LoraMode.Merge,
        "bypass" => LoraMode.Bypass,
        _ => throw new UserErrorException($"lora mode must be auto, merge or bypass, got '{text}'"),
    };

    public static string Id(this LoraMode mode) => mode.ToString().ToLowerInvariant();
}

/// <summary>A LoRA of a generation: its tag (strengths, schedules, block weights) and how it maps onto the model.</summary>
public sealed record ScheduledLora(LoraTag Tag, LoraApplication Application);

/// <summary>
/// The adapters of one generation over its sampling steps: <see cref="Start"/> applies the
/// strengths of step 0 (the text encoders keep theirs for the whole run, the text being encoded
/// once), <see cref="BeforeModelCall"/> moves scheduled UNet strengths before each model call —
/// re-merging only the weights whose strength changed, or just setting bypass branches'
/// strengths. Give <see cref="BeforeModelCall"/> to the sampler context when <see cref="Scheduled"/>.
/// </summary>
/// <param name="hooks">
/// ComfyUI hook LoRAs (see <see cref="HookRun"/>): on the UNet only, at strengths set by
/// <see cref="SetHookStrengths"/> (0 at first), beside the layers unless merging was asked
/// </param>
public sealed class LoraRun(Func<IReadOnlyList<LoraApplication>, int> apply, IReadOnlyList<ScheduledLora> loras, LoraMode mode = LoraMode.Auto,
                            IReadOnlyList<LoraApplication>? hooks = null)
{
    public LoraRun(LoraPatcher patcher, IReadOnlyList<ScheduledLora> loras, LoraMode mode = LoraMode.Auto)
        : this(patcher.Apply, loras, mode) { }

    double[]? _applied;
    readonly double[] _hookStrengths = new double[hooks?.Count ?? 0];
    int _step, _steps = 1;

    public bool Scheduled => loras.Any(l => l.Tag.Scheduled);
    public int HookCount => _hookStrengths.Length;

    /// <summary>Applies step 0's strengths; returns how many weights or branches changed.</summary>
    public int Start(int steps) => Apply(0, steps, force: true);

    /// <summary>Moves to the strengths of 0-based step <paramref name="step"/> of <paramref name="steps"/>.</summary>
    public void BeforeModelCall(int step, int steps) => Apply(step, steps, force: false);

    /// <summary>Sets the UNet strength of each hook LoRA; returns how many weights or branches changed.</summary>
    public int SetHookStrengths(IReadOnlyList<double> unet)
    {
        if (unet.Count != _hookStrengths.Length) throw new ArgumentException($"{_hookStrengths.Length} hook strengths expected", nameof(unet));
        if (unet.SequenceEqual(_hookStrengths)) return 0;
        for (int i = 0; i < unet.Count; i++) _hookStrengths[i] = unet[i];
        return Apply(_step, _steps, force: true);
    }

    int Apply(int step, int steps, bool force)
    {
        var unet = loras.Select(l => l.Tag.UNetAt(step, steps)).ToArray();
        if (!force && _applied is not null && unet.SequenceEqual(_applied)) return 0;
        _applied = unet;
        (_step, _steps) = (step, steps);
        var set = new List<LoraApplication>();
        for (int i = 0; i < loras.Count; i++)
        {
            var l = loras[i];
            var app = l.Application with { Blocks = l.Tag.Blocks };
            double te = l.Tag.TextEncoderSchedule?.At(0, steps) ?? l.Tag.TextEncoder;
            if (mode == LoraMode.Auto && l.Tag.Scheduled)
            {
                // the text encoder's part is static: merged; the UNet's part moves: bypass
                set.Add(app with { UNet = 0, TextEncoder = te, Bypass = false });
                set.Add(app with { UNet = unet[i], TextEncoder = 0, Bypass = true });
            }
            else set.Add(app with { UNet = unet[i], TextEncoder = te, Bypass = mode == LoraMode.Bypass });
        }
        for (int i = 0; i < _hookStrengths.Length; i++)
            set.Add(hooks![i] with { UNet = _hookStrengths[i], TextEncoder = 0, Bypass = mode != LoraMode.Merge });
        return apply(set);
    }
}
