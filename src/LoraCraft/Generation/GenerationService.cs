using System.Diagnostics;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Vae;
using LoraCraft.Pipelines;
using LoraCraft.Sampling;
using LoraCraft.Text.Embeddings;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Generation;

/// <summary>Where the service finds things and how it behaves.</summary>
public sealed record GenerationServiceOptions
{
    /// <summary>The checkpoints folder; null when models are only given by path (the CLI without a folder).</summary>
    public ModelCatalog? Catalog { get; init; }
    /// <summary>Whether a job may name files by path (the CLI: yes; an HTTP request: never).</summary>
    public bool AllowPaths { get; init; }
    public string LoraDir { get; init; } = Path.Combine("models", "Lora");
    public string EmbeddingsDir { get; init; } = EmbeddingLibrary.DefaultRoot;
    public FileHashes Hashes { get; init; } = FileHashes.Default;
    /// <summary>What PNGs record as the program (A1111's `Version`).</summary>
    public string Version { get; init; } = "loracraft 0.1.0";
    /// <summary>Memory free for a generation (tests substitute it).</summary>
    public Func<long> AvailableMemory { get; init; } = Runtime.SystemMemory.AvailableBytes;
    /// <summary>Loaded LoRA files kept between jobs.</summary>
    public int LoraFilesKept { get; init; } = 16;
}

/// <summary>
/// Everything between a <see cref="GenerationJob"/> and finished PNGs: the model from the cache,
/// the family's defaults, LoRA tags and structured LoRAs (selection, one patch set per job),
/// embeddings, images decoded and sized, the memory check, batch seeds, crop-and-stitch, progress
/// with previews, skip/interrupt, infotext. The CLI, the native API, the A1111 API and the ComfyUI
/// nodes are adapters over <see cref="Run"/>; torch work happens on the calling thread.
/// </summary>
public sealed class GenerationService : IDisposable
{
    readonly ModelCache _models;
    readonly LoraFileCache _loraFiles;

    public GenerationService(GenerationServiceOptions options, ModelCache models)
    {
        Options = options;
        _models = models;
        Loras = new LoraLibrary(options.LoraDir);
        Embeddings = new EmbeddingLibrary(options.EmbeddingsDir);
        _loraFiles = new LoraFileCache(options.LoraFilesKept);
    }

    public GenerationServiceOptions Options { get; }
    public ModelCache Models => _models;
    public LoraLibrary Loras { get; }
    public EmbeddingLibrary Embeddings { get; private set; }

    /// <summary>Scans the embeddings folder again.</summary>
    public void RefreshEmbeddings() => Embeddings = new EmbeddingLibrary(Options.EmbeddingsDir);

    /// <summary>The checkpoint a job names: a catalog entry, or (where allowed) a file or folder path.</summary>
    public CheckpointEntry ResolveModel(string model, string? configDir = null)
    {
        if (Options.AllowPaths && (File.Exists(model) || Directory.Exists(model))) return ModelCatalog.ForPath(model, configDir);
        if (Options.Catalog is { } catalog) return catalog.Resolve(model);
        if (Options.AllowPaths) throw new FileNotFoundException($"model not found: {model}", model);
        throw new UserErrorException(ErrorKind.NotFound, $"checkpoint '{model}' not found: no checkpoints folder is set") { Field = "model" };
    }

    /// <summary>
    /// Checks a job without loading anything, so mistakes are reported at once (an HTTP 4xx, the
    /// CLI's exit 2) and not after a model load.
    /// </summary>
    public static void Validate(GenerationJob job)
    {
        if (job.Steps < 1) throw new UserErrorException($"steps must be 1 or more, got {job.Steps}") { Field = "steps" };
        if (job.Steps > 10000) throw new UserErrorException($"steps must be at most 10000, got {job.Steps}") { Field = "steps" };
        if (job.Cfg < 0 || double.IsNaN(job.Cfg) || job.Cfg > 100) throw new UserErrorException($"cfg must be in [0, 100], got {job.Cfg}") { Field = "cfg" };
        foreach (var (name, v) in new[] { ("width", job.Width), ("height", job.Height) })
            if (v is { } side && (side <= 0 || side % 8 != 0 || side > MemoryEstimate.MaxSide))
                throw new UserErrorException(side > MemoryEstimate.MaxSide ? $"{name} must be at most {MemoryEstimate.MaxSide}, got {side}"
                    : $"{name} must be a positive multiple of 8, got {side}") { Field = name };
        if (job.Denoise is { } d && (d <= 0 || d > 1 || double.IsNaN(d))) throw new UserErrorException($"denoise must be in (0, 1], got {d}") { Field = "denoise" };
        if (job.BatchCount is < 1 or > 1000) throw new UserErrorException($"batch count must be from 1 to 1000, got {job.BatchCount}") { Field = "batch_count" };
        if (job.ClipSkip < 1) throw new UserErrorException($"clip skip must be 1 or more, got {job.ClipSkip}") { Field = "clip_skip" };
        if (job.SubseedStrength is < 0 or > 1 || double.IsNaN(job.SubseedStrength))
            throw new UserErrorException($"subseed strength must be in [0, 1], got {job.SubseedStrength}") { Field = "subseed_strength" };
        if (job.Mask is not null && job.InitImage is null) throw new UserErrorException("a mask needs an init image") { Field = "mask" };
        foreach (var (what, input) in new[] { ("init image", job.InitImage), ("mask", job.Mask) })
            if (input?.Path is { } path && !File.Exists(path)) throw new FileNotFoundException($"{what} not found: {path}", path);
        if (job.Inpaint.OnlyMasked && job.Mask is null) throw new UserErrorException("inpainting only the masked area needs a mask") { Field = "mask" };
        if (job.Inpaint.MaskBlur is < 0 or > 256) throw new UserErrorException($"mask blur must be from 0 to 256, got {job.Inpaint.MaskBlur}") { Field = "mask_blur" };
        if (job.Inpaint.Padding is < 0) throw new UserErrorException($"padding must be 0 or more, got {job.Inpaint.Padding}") { Field = "inpaint_full_res_padding" };
        if (job.PreviewEvery < 0) throw new UserErrorException($"preview interval must be 0 or more, got {job.PreviewEvery}");
        ResolveSampler(job);
        foreach (var l in job.Loras)
            if (string.IsNullOrWhiteSpace(l.Name)) throw new UserErrorException("a LoRA without a name") { Field = "loras" };
        LoraTags.Extract(job.Prompt);
        LoraTags.Extract(job.Negative);
    }

    static (string Sampler, string Scheduler) ResolveSampler(GenerationJob job) =>
        SamplerNames.Resolve(job.Sampler, string.IsNullOrWhiteSpace(job.Scheduler) ? null : job.Scheduler);

    /// <summary>Runs a job to the end (or to a skip/interrupt); <see cref="OperationCanceledException"/> on cancel.</summary>
    public GenerationOutput Run(GenerationJob job, JobContext ctx)
    {
        Validate(job);
        var clock = Stopwatch.StartNew();
        var entry = ResolveModel(job.Model, job.ConfigDir);
        var (sampler, scheduler) = ResolveSampler(job);
        var notes = new List<string>();
        var warnings = new List<string>();
        void Note(string s) { notes.Add(s); ctx.Note(s); }
        void Warn(string s) { warnings.Add(s); ctx.Warn(s); }

        bool loading = false;
        var loadClock = Stopwatch.StartNew();
        using var lease = _models.Acquire(entry, job.TokenizerDir, job.Prediction, name =>
        {
            loading = true;
            ctx.Report(new JobPhase(ctx.Id, "loading", name));
        });
        var loaded = lease.Model;
        var model = loaded.Model;
        if (loading)
            ctx.Report(new JobPhase(ctx.Id, "loaded", $"{model.Family.Id()}{(model.Inpainting ? " inpainting" : "")} model {entry.Path} in " +
                                                      $"{loadClock.Elapsed.TotalSeconds:F1} s ({Runtime.Compute.Name(model.DType)})"));
        ctx.Cancel.ThrowIfCancellationRequested();

        using var inputs = new GenerationInputs();
        var request = Settle(job, model, sampler, scheduler, inputs, Note);
        CropOptions? crop = job.Inpaint.OnlyMasked
            ? new CropOptions
            {
                ContextMargin = job.Inpaint.Padding ?? new CropOptions().ContextMargin,
                WorkingSize = job.Inpaint.WorkingSize ?? (Math.Max(job.Width ?? 0, job.Height ?? 0) is > 0 and var side ? side : FamilySize(model)),
            }
            : null;
        crop?.Validate();

        // a size that cannot fit is refused (or tiled) before minutes of work
        int workW = crop is null ? request.Width : crop.WorkingLongSide, workH = crop is null ? request.Height : crop.WorkingLongSide;
        var need = MemoryEstimate.For(model, workW, workH, request.Cfg != 1);
        long available = Math.Min(Options.AvailableMemory(), job.MemoryLimitBytes ?? long.MaxValue);
        var (tiling, tilingNote) = need.Fit(request.VaeTiling, VaeTiling.ShouldTile(VaeTilingMode.Auto, workH / 8, workW / 8), available, workW, workH);
        if (tilingNote is not null) Note(tilingNote);
        request = request with { VaeTiling = tiling };

        // LoRAs: tags in both prompts (removed before the text is parsed) and the structured list
        var (prompt, promptTags) = LoraTags.Extract(request.Prompt);
        var (negative, negativeTags) = LoraTags.Extract(request.Negative);
        var selector = new LoraSelector(Loras, Options.Hashes, Options.AllowPaths);
        var selected = selector.Select(promptTags.Concat(negativeTags),
                                       job.Loras.Select(ToTag), job.KnownLoraHashes);
        // strengths of step 0 now; per-step schedules move them before each model call
        using var loraScope = UseLoras(loaded, selected, Warn, request.LoraMode, request.Steps);
        var applied = loraScope.Applied;
        ctx.Report(new JobPhase(ctx.Id, "loras", string.Join(", ", applied.Zip(selected, (a, s) =>
            $"{a.Name} ({a.Algorithm}: unet {s.Tag.UNetSchedule?.ToString() ?? Num(a.UNet)}, te {Num(a.TextEncoder)}, {a.Layers} layers)"))));

        // textual inversions: the folder's, and those bundled in the LoRAs applied
        var embeddings = Embeddings.ToSet().With(selected.SelectMany(s => TextualInversion.FromLora(s.Path)));
        request = request with { Embeddings = embeddings, Prompt = prompt, Negative = negative };

        // what PNGs record: the prompt with every LoRA as a tag, so it reruns as it was made
        string recordedPrompt = string.Join(" ", new[] { job.Prompt }.Concat(selected.Where(s => !s.FromPrompt).Select(LoraSelector.TagFor)));
        var extra = selected.Count > 0 ? new List<KeyValuePair<string, string>> { new("Lora hashes", selector.HashesText(selected)) } : null;
        string? modelHash = Options.Catalog is { } catalog && entry.Kind == CheckpointKind.SingleFile ? catalog.ShortHash(entry)
            : entry.Kind == CheckpointKind.SingleFile ? Options.Hashes.ModelHash(entry.Path) : null;
        string modelName = entry.Stem;

        var images = new List<GeneratedImage>();
        var steps = new StepClock(job.BatchCount, request.Steps);
        for (int i = 0; i < job.BatchCount && !ctx.Interrupted; i++)
        {
            var one = request with { Seed = Seeds.ForImage(request.Seed, i), Subseed = Seeds.ForImage(request.Subseed, i) };
            var image = RunOne(loaded, one, crop, i, job, steps, ctx, loraScope.Run);
            var parameters = GenerationParameters.Describe(one with { Prompt = recordedPrompt, Negative = job.Negative }, modelName, modelHash, Options.Version, extra);
            string infotext = parameters.Format();
            using var result = image;
            var png = ImageFiles.EncodePng(result.Image, new Dictionary<string, string> { [ImageFiles.ParametersKey] = infotext });
            var generated = new GeneratedImage(png, (int)result.Image.shape[3], (int)result.Image.shape[2], one.Seed, one.Subseed, infotext)
            {
                Latent = job.ReturnLatents && result.Latent is { } l ? new LatentData(l.to(ScalarType.Float32).data<float>().ToArray(), l.shape) : null,
                Partial = result.Partial,
                Crop = result.Crop,
            };
            images.Add(generated);
            ctx.Report(new JobImage(ctx.Id, i, generated));
        }
        var resolved = new ResolvedJob(modelName, modelHash, model.Family.Id(), job.Prompt, job.Negative, request.Seed, request.Subseed,
            request.Steps, request.Cfg, request.Sampler, request.Scheduler, request.Width, request.Height, request.ClipSkip,
            request.Denoise, request.InitImage is not null, applied);
        return new GenerationOutput(images, resolved)
        {
            Notes = notes, Warnings = warnings, Interrupted = ctx.Interrupted, Seconds = clock.Elapsed.TotalSeconds,
        };
    }

    /// <summary>
    /// Makes <paramref name="selected"/> the LoRAs of <paramref name="loaded"/> for as long as the
    /// returned scope lives: each file from the LoRA file cache, its plan on this model, one patch
    /// set (<see cref="LoadedModel.Use"/>, which also holds the model for this caller). A partial fit
    /// is reported to <paramref name="warn"/>. The generation job and ComfyUI's LoRA loader nodes use it.
    /// </summary>
    /// <param name="mode">merged, bypass, or auto (bypass only for the UNet part of scheduled LoRAs)</param>
    /// <param name="steps">sampling steps, for the strengths of step 0 of scheduled LoRAs (<see cref="LoraScope.Run"/> moves them)</param>
    /// <param name="hooks">ComfyUI hook LoRAs: planned and attached to the UNet at strength 0, moved by <see cref="LoraRun.SetHookStrengths"/> (a <see cref="HookRun"/>)</param>
    public LoraScope UseLoras(LoadedModel loaded, IReadOnlyList<SelectedLora> selected, Action<string>? warn = null,
                              LoraMode mode = LoraMode.Auto, int steps = 1, IReadOnlyList<SelectedLora>? hooks = null)
    {
        var fileLeases = new List<LoraFileLease>();
        try
        {
            var scheduled = new List<ScheduledLora>();
            var applied = new List<AppliedLora>();
            LoraPlan Plan(SelectedLora s)
            {
                var fileLease = _loraFiles.Acquire(s.Path);
                fileLeases.Add(fileLease);
                var plan = loaded.Plan(fileLease.File);
                // a partial fit is worth knowing even when progress is quiet
                if (plan.Unmatched.Count > 0)
                    warn?.Invoke($"LoRA {s.Name}: {plan.Unmatched.Count} keys match no layer of this model (e.g. {string.Join(", ", plan.Unmatched.Take(3))})");
                return plan;
            }
            foreach (var s in selected)
            {
                var plan = Plan(s);
                scheduled.Add(new ScheduledLora(s.Tag, new LoraApplication(plan, s.Tag.UNet, s.Tag.TextEncoder, s.Tag.DynRank)));
                applied.Add(new AppliedLora(s.Name, s.Path, s.Tag.UNet, s.Tag.TextEncoder, plan.Matched.Count, plan.Unmatched.Count) { Algorithm = plan.File.Algorithm.Id() });
            }
            var hookApps = (hooks ?? []).Select(h => new LoraApplication(Plan(h), 0, 0, h.Tag.DynRank)).ToList();
            var hold = loaded.Hold();
            try
            {
                var run = new LoraRun(hold.Apply, scheduled, mode, hookApps);
                run.Start(steps);
                return new LoraScope(applied, hold, fileLeases, run);
            }
            catch
            {
                hold.Dispose();
                throw;
            }
        }
        catch
        {
            foreach (var l in fileLeases) l.Dispose();
            throw;
        }
    }

    /// <summary>Finds every LoRA a job names (tags and list) without loading one: a wrong name fails now.</summary>
    public void CheckLoras(GenerationJob job)
    {
        var selector = new LoraSelector(Loras, Options.Hashes, Options.AllowPaths);
        var tags = LoraTags.Extract(job.Prompt).Tags.Concat(LoraTags.Extract(job.Negative).Tags);
        selector.Select(tags, job.Loras.Select(ToTag), job.KnownLoraHashes);
    }

    static LoraTag ToTag(LoraUse l)
    {
        string where = $"LoRA '{l.Name}'";
        return new LoraTag(l.Name, l.TextEncoder, l.UNet, l.DynRank)
        {
            UNetSchedule = l.UNetSchedule is { } u ? StrengthSchedule.Parse(u, where) : null,
            TextEncoderSchedule = l.TextEncoderSchedule is { } t ? StrengthSchedule.Parse(t, where) : null,
            Blocks = l.Blocks,
        };
    }

    /// <summary>One image of the job, whole or crop-and-stitched.</summary>
    OneImage RunOne(LoadedModel loaded, GenerationRequest request, CropOptions? crop, int index, GenerationJob job, StepClock clock, JobContext ctx, LoraRun loras)
    {
        var model = loaded.Model;
        var progress = new StepProgress(ctx, clock, index, job.PreviewEvery, model.Family);
        var sampler = new SamplerContext(progress, ctx.Cancel)
        {
            Stop = ctx.StopCurrentImage, BeforeModelCall = loras.Scheduled ? loras.BeforeModelCall : null,
        };
        ctx.Report(new JobPhase(ctx.Id, "sampling", job.BatchCount > 1 ? $"image {index + 1}/{job.BatchCount}" : null));
        if (crop is null)
        {
            var r = StableDiffusionPipeline.Generate(model, request, sampler);
            foreach (var change in r.Prompts.Skip(1))
                ctx.Report(new JobPhase(ctx.Id, "prompt", $"from step {change.Step}: {string.Join(" AND ", change.Positive)}" +
                                                          (change.Negative is { } n ? $" | negative: {n}" : "")));
            return new OneImage(r.Image, r.Latent, r.Partial, null, r);
        }
        bool partial = false;
        var stitched = CropAndStitch.Inpaint(request.InitImage!, request.Mask!, (cropImage, cropMask) =>
        {
            var r = StableDiffusionPipeline.Generate(model, request with
            {
                InitImage = cropImage, Mask = cropMask, Width = (int)cropImage.shape[3], Height = (int)cropImage.shape[2],
            }, sampler);
            partial = r.Partial;
            r.Latent.Dispose();
            return r.Image;
        }, crop);
        return new OneImage(stitched.Image, null, partial, stitched.Box, stitched);
    }

    sealed record OneImage(Tensor Image, Tensor? Latent, bool Partial, CropBox? Crop, IDisposable Owner) : IDisposable
    {
        public void Dispose() => Owner.Dispose();
    }

    /// <summary>
    /// The pipeline request for a job on this model: sampler and family defaults, sizes from the
    /// images, images decoded (and resized, blurred, inverted, filled) into tensors <paramref name="inputs"/> owns.
    /// </summary>
    GenerationRequest Settle(GenerationJob job, StableDiffusionModel model, string sampler, string scheduler, GenerationInputs inputs, Action<string> note)
    {
        var r = new GenerationRequest
        {
            Prompt = job.Prompt, Negative = job.Negative, Steps = job.Steps, Cfg = job.Cfg, Sampler = sampler, Scheduler = scheduler,
            ClipSkip = job.ClipSkip, PromptStyle = job.PromptStyle, OldScheduling = job.OldScheduling, Noise = job.Noise,
            NoiseConvention = job.NoiseConvention ?? (job.Noise == RandomSource.Nv || job.SubseedStrength != 0 ? NoiseConvention.A1111 : NoiseConvention.ComfyUI),
            Seed = job.Seed ?? Seeds.Random(),
            Subseed = job.Subseed ?? (job.SubseedStrength != 0 ? Seeds.Random() : 0),
            SubseedStrength = job.SubseedStrength, VaeTiling = job.VaeTiling, ScheduleSteps = job.ScheduleSteps, LoraMode = job.LoraMode,
        };
        int size = FamilySize(model);
        if (job.InitImage is null)
            return r with { Width = job.Width ?? size, Height = job.Height ?? size, Denoise = 1 };

        var initBytes = Bytes(job.InitImage, "init image");
        var (iw, ih) = ImageFiles.Size(initBytes, job.InitImage.Describe("init image"));
        int width, height;
        if (job.Inpaint.OnlyMasked)
            (width, height) = (iw, ih); // the image keeps its size: only the crop is generated at the working size
        else
        {
            (width, height) = ImageSizing.WorkingSize(iw, ih, job.Width, job.Height);
            if (ImageSizing.ResizeNote("init image", iw, ih, width, height) is { } n) note(n);
        }
        var image = inputs.Own(ImageFiles.DecodeRgb(initBytes, job.InitImage.Describe("init image"), width, height));
        Tensor? mask = null;
        if (job.Mask is not null)
        {
            var maskBytes = Bytes(job.Mask, "mask");
            var (mw, mh) = ImageFiles.Size(maskBytes, job.Mask.Describe("mask"));
            if (ImageSizing.ResizeNote("mask", mw, mh, width, height) is { } n) note(n);
            mask = inputs.Own(ImageFiles.DecodeMask(maskBytes, job.Mask.Describe("mask"), width, height));
            if (job.Inpaint.InvertMask) mask = inputs.Own(MaskOps.Invert(mask));
            if (job.Inpaint.MaskBlur > 0) mask = inputs.Own(MaskOps.Blur(mask, job.Inpaint.MaskBlur));
            if (job.Inpaint.MaskedContent == MaskedContent.Fill) image = inputs.Own(MaskOps.Fill(image, mask));
        }
        return r with
        {
            Width = width, Height = height, InitImage = image, Mask = mask,
            Denoise = job.Denoise ?? (mask is null ? 0.75 : 1),
            MaskedLatent = job.Inpaint.MaskedContent switch
            {
                MaskedContent.LatentNoise => MaskedLatentFill.Noise,
                MaskedContent.LatentNothing => MaskedLatentFill.Zeros,
                _ => MaskedLatentFill.Original,
            },
        };
    }

    byte[] Bytes(ImageInput input, string what)
    {
        if (input.Bytes is { } b) return b;
        if (input.Path is { } p)
        {
            if (!Options.AllowPaths) throw new UserErrorException($"{what}: images must be sent as data, not as a path") { Field = what.Replace(' ', '_') };
            return File.Exists(p) ? File.ReadAllBytes(p) : throw new FileNotFoundException($"{what} not found: {p}", p);
        }
        throw new UserErrorException($"{what}: no image given") { Field = what.Replace(' ', '_') };
    }

    /// <summary>The family's usual size: SD1 512, SD2-v 768 (SD2 eps 512), SDXL 1024.</summary>
    public static int FamilySize(StableDiffusionModel model) =>
        model.Family == ModelFamily.Sd2 && model.Prediction == Prediction.Epsilon ? 512 : model.Family.DefaultSize();

    static string Num(double v) => GenerationParameters.Num(v);

    public void Dispose() => _loraFiles.Dispose();

    /// <summary>Seconds per step and the remaining time over the whole job.</summary>
    sealed class StepClock(int images, int steps)
    {
        readonly Stopwatch _clock = Stopwatch.StartNew();
        int _done;

        public int Images { get; } = images;

        public (double PerStep, double Eta) Tick(int imageTotalSteps)
        {
            _done++;
            double per = _clock.Elapsed.TotalSeconds / _done;
            int remaining = Math.Max(0, Images * Math.Max(steps, imageTotalSteps) - _done);
            return (per, per * remaining);
        }
    }

    /// <summary>Sampler steps as job events, with a latent preview on every n-th step.</summary>
    sealed class StepProgress(JobContext ctx, StepClock clock, int image, int previewEvery, ModelFamily family) : IProgress<SamplerStep>
    {
        public void Report(SamplerStep step)
        {
            var (per, eta) = clock.Tick(step.Total);
            byte[]? preview = null;
            if (previewEvery > 0 && (step.Index % previewEvery == 0 || step.Index == step.Total) && (step.Denoised ?? step.X) is { } latent)
                preview = LatentPreview.Png(latent, family);
            ctx.Report(new JobStep(ctx.Id, step.Index, step.Total, image, clock.Images, per, eta, preview));
        }
    }
}

/// <summary>LoRAs applied to a model (see <see cref="GenerationService.UseLoras"/>); disposing releases the model and the files.</summary>
public sealed class LoraScope(IReadOnlyList<AppliedLora> applied, IDisposable use, IReadOnlyList<LoraFileLease> files, LoraRun run) : IDisposable
{
    int _disposed;

    public IReadOnlyList<AppliedLora> Applied { get; } = applied;
    /// <summary>The LoRAs over the sampling steps: give <see cref="LoraRun.BeforeModelCall"/> to the sampler when <see cref="LoraRun.Scheduled"/>.</summary>
    public LoraRun Run { get; } = run;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        use.Dispose();
        foreach (var f in files) f.Dispose();
    }
}

/// <summary>The tensors a job makes from its inputs, disposed when the job ends.</summary>
public sealed class GenerationInputs : IDisposable
{
    readonly List<Tensor> _owned = new();

    public Tensor Own(Tensor t)
    {
        _owned.Add(t);
        return t;
    }

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
    }
}
