using LoraCraft.Generation;
using LoraCraft.Lora;
using LoraCraft.Pipelines;
using static TorchSharp.torch;

namespace LoraCraft.Server.Comfy;

// What flows along a ComfyUI graph's links here: engine objects, not ComfyUI's Python ones.
// MODEL, CLIP and VAE are descriptions (a checkpoint and its LoRAs); the model itself is leased
// when a node needs its weights. Values holding tensors own their handles: a node that passes a
// tensor on gives the next value a handle of its own (alias), so every cached output can be
// disposed on its own.

/// <summary>Handles for values: a new handle on the same storage, outside any dispose scope (the value owns it).</summary>
public static class ValueHandles
{
    public static Tensor Handle(this Tensor t) => t.alias().DetachFromDisposeScope();
}

/// <summary>MODEL: a checkpoint's UNet with the LoRAs applied to it (UNet strengths).</summary>
public sealed record ModelValue(CheckpointEntry Entry, IReadOnlyList<SelectedLora> Loras);

/// <summary>
/// CLIP: a checkpoint's text encoder, its LoRAs (text-encoder strengths) and A1111-style clip skip
/// (1 = last layer); with SetClipHooks, hooks whose LoRAs it encodes with (at their CLIP
/// strengths, per keyframe range when <see cref="ScheduleClip"/>), attached to what it encodes when <see cref="HooksToConds"/>.
/// </summary>
public sealed record ClipValue(CheckpointEntry Entry, IReadOnlyList<SelectedLora> Loras, int ClipSkip)
{
    public HookGroup? Hooks { get; init; }
    public bool HooksToConds { get; init; } = true;
    public bool ScheduleClip { get; init; }
}

/// <summary>VAE: the checkpoint's VAE.</summary>
public sealed record VaeValue(CheckpointEntry Entry);

/// <summary>
/// One conditioning of a CONDITIONING list: the encoding with the properties ComfyUI keeps beside
/// it (mask, strength, timestep range, hooks, default; see <see cref="GuidedCondition"/>) and the
/// inpainting model's extra input when set. The entry owns its tensors' handles.
/// </summary>
public sealed class ConditioningEntry(GuidedCondition condition, InpaintConcat? concat = null) : IDisposable
{
    public ConditioningEntry(Text.Conditioning conditioning, InpaintConcat? concat = null) : this(new GuidedCondition(conditioning), concat) { }

    public GuidedCondition Condition { get; } = condition;
    public Text.Conditioning Conditioning => Condition.Conditioning;
    public InpaintConcat? Concat { get; } = concat;

    /// <summary>
    /// A copy with handles of its own (same storage): <paramref name="concat"/> replaces the
    /// inpainting input, <paramref name="mask"/> (a handle the copy takes over) the mask, and
    /// <paramref name="change"/> the other properties.
    /// </summary>
    public ConditioningEntry Alias(InpaintConcat? concat = null, Func<GuidedCondition, GuidedCondition>? change = null, Tensor? mask = null)
    {
        var c = Condition with
        {
            Conditioning = new Text.Conditioning(Conditioning.Context.Handle(), Conditioning.Pooled?.Handle()),
            Mask = mask ?? Condition.Mask?.Handle(),
        };
        if (change is not null) c = change(c);
        return new(c, concat ?? (Concat is null ? null : new InpaintConcat(Concat.Mask.Handle(), Concat.MaskedLatent.Handle())));
    }

    public void Dispose()
    {
        Conditioning.Dispose();
        Condition.Mask?.Dispose();
        Concat?.Mask.Dispose();
        Concat?.MaskedLatent.Dispose();
    }
}

/// <summary>CONDITIONING: ComfyUI's list of conditionings (several after Conditioning (Combine): their predictions are averaged, weighted by their masks and strengths).</summary>
public sealed class ConditioningValue(IReadOnlyList<ConditioningEntry> entries) : IDisposable
{
    public IReadOnlyList<ConditioningEntry> Entries { get; } = entries;

    public void Dispose()
    {
        foreach (var e in Entries) e.Dispose();
    }
}

/// <summary>LATENT: samples [B,C,h,w] in model space and the optional noise mask [B or 1,1,H,W] (any size; 1 = denoise).</summary>
public sealed class LatentValue(Tensor samples, Tensor? noiseMask = null) : IDisposable
{
    public Tensor Samples { get; } = samples;
    public Tensor? NoiseMask { get; } = noiseMask;

    public LatentValue With(Tensor samples) => new(samples, NoiseMask?.Handle());

    public void Dispose()
    {
        Samples.Dispose();
        NoiseMask?.Dispose();
    }
}

/// <summary>IMAGE: [B,3,H,W] in [0,1] (ComfyUI keeps [B,H,W,C]; no client sees the layout).</summary>
public sealed class ImageValue(Tensor pixels) : IDisposable
{
    public Tensor Pixels { get; } = pixels;
    public int Width => (int)Pixels.shape[3];
    public int Height => (int)Pixels.shape[2];
    public void Dispose() => Pixels.Dispose();
}

/// <summary>MASK: [B,1,H,W] in [0,1], 1 = the masked (repainted) part.</summary>
public sealed class MaskValue(Tensor mask) : IDisposable
{
    public Tensor Mask { get; } = mask;
    public void Dispose() => Mask.Dispose();
}

/// <summary>STITCHER / STITCH: what the crop node cut, one per batch image, for the stitch node.</summary>
public sealed class StitcherValue(IReadOnlyList<CropState> crops) : IDisposable
{
    public IReadOnlyList<CropState> Crops { get; } = crops;

    public void Dispose()
    {
        foreach (var c in Crops) c.Dispose();
    }
}

/// <summary>HOOK_KEYFRAMES: a hook strength schedule.</summary>
public sealed record HookKeyframesValue(HookKeyframes Keyframes);

/// <summary>TIMESTEPS_RANGE: a part of the sampling run, as fractions (0 = start).</summary>
public sealed record TimestepsRange(double Start, double End);
