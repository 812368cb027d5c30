using LoraCraft.Models;
using LoraCraft.Sampling;
using LoraCraft.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Pipelines;

/// <summary>
/// The guided model call: conditional and unconditional predictions in one batch, turned into
/// denoised estimates (eps or v) and mixed by classifier-free guidance. cfg 1 skips the
/// unconditional half (unless `AND` parts need it). Text conditioning is computed once here,
/// never per step; with prompt editing the conditioning of each step is picked from the
/// precomputed schedule. `AND` parts are combined as A1111 does:
/// uncond + Σ (cond_k − uncond) · weight_k · cfg.
/// </summary>
/// <summary>What a sampler calls for each model evaluation: the denoised estimate of x at sigma.</summary>
public interface IGuidance
{
    /// <summary>A new sampling run of batch item <paramref name="item"/> over <paramref name="sigmas"/> (state that lives for one run starts again).</summary>
    void BeginItem(long item, float[] sigmas) { }

    /// <summary>The denoised estimate at <paramref name="sigma"/>, using the conditioning of 1-based sampling step <paramref name="step"/>.</summary>
    Tensor Denoise(Tensor x, float sigma, NoiseSchedule schedule, InpaintConcat? concat, int step = 1);
}

public sealed class Guidance : IGuidance, IDisposable
{
    readonly StableDiffusionModel _model;
    readonly double _cfg;
    readonly PromptConditioning _prompts;
    readonly PromptStyle _style;
    readonly Tensor? _timeIds;  // SDXL [1, 6]
    readonly bool _ownsPrompts;
    string _key = "";
    Group[] _groups = [];
    readonly List<StepPrompts> _timeline = new();

    /// <summary>One UNet batch: its rows' contexts (and SDXL vectors) in the UNet's dtype.</summary>
    sealed record Group(Tensor Context, Tensor? Y, int Rows);

    Guidance(StableDiffusionModel model, double cfg, PromptConditioning prompts, PromptStyle style, Tensor? timeIds, bool ownsPrompts = true)
    {
        _ownsPrompts = ownsPrompts;
        _model = model;
        _cfg = cfg;
        _prompts = prompts;
        _style = style;
        _timeIds = timeIds;
    }

    /// <summary>The prompts as scheduled conditionings (for callers that inspect them).</summary>
    public PromptConditioning Prompts => _prompts;

    /// <summary>The texts in use from each step on where they changed (step 1 always).</summary>
    public IReadOnlyList<StepPrompts> Timeline => _timeline;

    public static Guidance Prepare(StableDiffusionModel model, GenerationRequest request)
    {
        var options = new PromptOptions
        {
            Style = request.PromptStyle, ClipSkip = request.ClipSkip, OldScheduling = request.OldScheduling, Embeddings = request.Embeddings,
        };
        bool useUncond = PromptConditioning.NeedsNegative(request.Prompt, request.Cfg, request.PromptStyle);
        var prompts = PromptConditioning.Encode(model, request.Prompt, useUncond ? request.Negative : null, request.Steps, options);
        return new Guidance(model, request.Cfg, prompts, request.PromptStyle, TimeIds(model, request.Width, request.Height));
    }

    /// <summary>
    /// Guidance over prompts encoded elsewhere (ComfyUI's CLIPTextEncode nodes), for an image of
    /// <paramref name="width"/> x <paramref name="height"/>; the caller keeps owning <paramref name="prompts"/>.
    /// </summary>
    public static Guidance FromConditioning(StableDiffusionModel model, double cfg, PromptConditioning prompts, int width, int height,
                                            PromptStyle style = PromptStyle.ComfyUI) =>
        new(model, cfg, prompts, style, TimeIds(model, width, height), ownsPrompts: false);

    // SDXL: original size, crop (0, 0), target size: all the generated size
    static Tensor? TimeIds(StableDiffusionModel model, int width, int height) =>
        model.Family == ModelFamily.Sdxl ? torch.tensor(new float[] { height, width, 0, 0, height, width }).unsqueeze(0) : null;

    /// <summary>The denoised estimate at <paramref name="sigma"/>, using the conditioning of 1-based sampling step <paramref name="step"/>.</summary>
    public Tensor Denoise(Tensor x, float sigma, NoiseSchedule schedule, InpaintConcat? concat, int step = 1)
    {
        Select(step);
        using var scope = NewDisposeScope();
        var outputs = _groups.Select(g => RunGroup(g, x, sigma, schedule, concat)).ToList();
        var denoised = outputs.Count == 1 ? outputs[0] : torch.cat(outputs, 0);
        int parts = _prompts.Positive.Count;
        if (_prompts.Negative is null && parts == 1) return denoised.MoveToOuterDisposeScope();
        if (_prompts.IsSingle || (parts == 1 && _prompts.Positive[0].Weight == 1))
        {
            var halves = denoised.chunk(2, 0);
            var guided = halves[1].Add((halves[0] - halves[1]).Mul(_cfg));
            return guided.MoveToOuterDisposeScope();
        }
        // A1111's combine_denoised: rows are the parts in order, then the unconditional one
        var uncond = denoised[TensorIndex.Slice(parts, parts + 1)];
        var result = uncond.clone();
        for (int k = 0; k < parts; k++)
            result.AddInPlace((denoised[TensorIndex.Slice(k, k + 1)] - uncond).Mul(_prompts.Positive[k].Weight * _cfg));
        return result.MoveToOuterDisposeScope();
    }

    Tensor RunGroup(Group g, Tensor x, float sigma, NoiseSchedule schedule, InpaintConcat? concat)
    {
        long batch = g.Rows;
        double s = sigma;
        var xb = batch == 1 ? x : x.expand(batch, -1, -1, -1);
        var input = xb.Mul(1 / Math.Sqrt(s * s + 1));
        if (concat is not null) input = concat.Concat(input);
        var t = TensorMath.Full([batch], (float)schedule.Timestep(sigma));
        var output = _model.UNet.Forward(input, t, g.Context, g.Y);
        return Denoised(_model, xb, output, s);
    }

    /// <summary>The denoised estimate from the UNet's output at <paramref name="sigma"/> for its input <paramref name="x"/> (eps or v prediction).</summary>
    internal static Tensor Denoised(StableDiffusionModel model, Tensor x, Tensor output, double sigma) =>
        model.Prediction == Prediction.V
            ? x.Mul(1 / (sigma * sigma + 1)) - output.Mul(sigma / Math.Sqrt(sigma * sigma + 1))
            : x - output.Mul(sigma);

    /// <summary>Builds the UNet batches for a step's conditionings when they differ from the last step's.</summary>
    void Select(int step)
    {
        var conds = _prompts.Positive.Select(p => p.Schedule.Entries[p.Schedule.IndexAt(step)]).ToList();
        var uncond = _prompts.Negative is { } n ? n.Entries[n.IndexAt(step)] : null;
        string key = string.Join(",", _prompts.Positive.Select(p => p.Schedule.IndexAt(step))) + "|" + (_prompts.Negative?.IndexAt(step) ?? -1);
        if (key == _key) return;
        _key = key;
        _timeline.Add(new StepPrompts(step, conds.Select(c => c.Text).ToList(), uncond?.Text));
        foreach (var g in _groups) DisposeGroup(g);
        using var scope = NewDisposeScope();
        var rows = conds.Select(c => c.Conditioning).ToList();
        if (rows.Count == 1)
        {
            // one prompt: both halves in one batch, the shorter context repeated to a common length
            var contexts = uncond is null ? [rows[0].Context] : MatchLengths(rows[0].Context, uncond.Conditioning.Context);
            var pooled = uncond is null ? [rows[0].Pooled] : new[] { rows[0].Pooled, uncond.Conditioning.Pooled };
            _groups = [MakeGroup(contexts, pooled)];
            if (_style == PromptStyle.A1111 && uncond is not null && rows[0].Context.shape[1] != uncond.Conditioning.Context.shape[1])
            {
                // A1111 runs prompt and negative prompt of different lengths as separate batches
                DisposeGroup(_groups[0]);
                _groups = [MakeGroup([rows[0].Context], [rows[0].Pooled]), MakeGroup([uncond.Conditioning.Context], [uncond.Conditioning.Pooled])];
            }
        }
        else
        {
            // A1111's stack_conds: parts of different lengths are padded with their last vector
            long longest = rows.Max(r => r.Context.shape[1]);
            var padded = rows.Select(r => PadWithLast(r.Context, longest)).ToArray();
            var pooled = rows.Select(r => r.Pooled).ToArray();
            if (uncond is null) _groups = [MakeGroup(padded, pooled)];
            else if (uncond.Conditioning.Context.shape[1] == longest)
                _groups = [MakeGroup([.. padded, uncond.Conditioning.Context], [.. pooled, uncond.Conditioning.Pooled])];
            else _groups = [MakeGroup(padded, pooled), MakeGroup([uncond.Conditioning.Context], [uncond.Conditioning.Pooled])];
        }
    }

    Group MakeGroup(Tensor[] contexts, Tensor?[] pooled)
    {
        var context = contexts.Length == 1 ? contexts[0] : torch.cat(contexts, 0);
        Tensor? y = null;
        if (_timeIds is not null)
        {
            var p = pooled.Length == 1 ? pooled[0]! : torch.cat(pooled.Select(t => t!).ToArray(), 0);
            y = _model.UNet.SdxlVector(p, _timeIds.expand(p.shape[0], -1));
        }
        // converted once to the UNet's dtype and device, so its per-step conversions are no-ops;
        // owned by this object (a handle of its own even when nothing needed converting)
        var c = context.to(_model.DType, _model.UNet.Device);
        if (ReferenceEquals(c, contexts[0])) c = c.alias();
        var yc = y?.to(_model.DType, _model.UNet.Device);
        return new Group(c.DetachFromDisposeScope(), yc?.DetachFromDisposeScope(), contexts.Length);
    }

    static void DisposeGroup(Group g)
    {
        g.Context.Dispose();
        g.Y?.Dispose();
    }

    static Tensor PadWithLast(Tensor context, long length)
    {
        if (context.shape[1] == length) return context;
        var last = context[.., TensorIndex.Slice(-1)];
        return torch.cat([context, last.repeat(1, length - context.shape[1], 1)], 1);
    }

    /// <summary>Repeats the shorter context so both halves of the batch have the same token count.</summary>
    static Tensor[] MatchLengths(Tensor a, Tensor b)
    {
        long la = a.shape[1], lb = b.shape[1];
        if (la == lb) return [a, b];
        long lcm = la / Gcd(la, lb) * lb;
        return [a.repeat(1, lcm / la, 1), b.repeat(1, lcm / lb, 1)];
        static long Gcd(long x, long y) => y == 0 ? x : Gcd(y, x % y);
    }

    public void Dispose()
    {
        foreach (var g in _groups) DisposeGroup(g);
        _groups = [];
        _timeIds?.Dispose();
        if (_ownsPrompts) _prompts.Dispose();
    }
}

/// <summary>From sampling step <see cref="Step"/> on: the text of each `AND` part and of the negative prompt (null when unused).</summary>
public sealed record StepPrompts(int Step, IReadOnlyList<string> Positive, string? Negative);
