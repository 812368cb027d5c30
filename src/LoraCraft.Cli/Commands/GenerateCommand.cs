using System.Globalization;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Pipelines;
using LoraCraft.Sampling;
using TorchSharp;

namespace LoraCraft.Cli.Commands;

/// <summary>`loracraft generate`: txt2img, img2img and inpainting from the command line.</summary>
public static class GenerateCommand
{
    public const string Version = "loracraft 0.1.0";

    public static readonly string[] Flags = ["quiet", "inpaint-crop", "demo"];
    public static readonly string[] Options =
    [
        "model", "config", "tokenizer", "prompt", "negative", "seed", "steps", "cfg", "sampler", "scheduler",
        "width", "height", "clip-skip", "init-image", "denoise", "mask", "crop-context", "crop-size",
        "batch-count", "out", "save-latent", "from-png", "prediction", "lora", "lora-dir", "lora-mode", "dtype", "threads", "vae-tiling", "device",
    ];

    public static int Run(string[] argv, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        var a = new Args("generate", argv, Flags, Options);
        if (a.Positionals.Count > 0) throw new UserErrorException($"unexpected argument '{a.Positionals[0]}' (the prompt goes after --prompt)");
        string outPath = a.Require("out");
        if (!outPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase)) throw new UserErrorException($"--out must name a .png file, got '{outPath}'");
        // --demo: a tiny random model and LoRA made once, for a first run without a checkpoint
        DemoAssets? demo = null;
        if (a.Flag("demo"))
        {
            if (a.Get("model") is not null) throw new UserErrorException("--demo brings its own model; drop --model (or --demo)");
            demo = DemoAssets.Ensure(Path.Combine(Runtime.Paths.CacheRoot, "demo"), stderr);
            stderr.WriteLine("DEMO: a tiny model with RANDOM weights — the picture is noise. For real images: --model YOUR_CHECKPOINT.safetensors");
        }
        string modelPath = demo?.Model ?? a.Require("model");
        var prediction = a.Get("prediction") switch
        {
            null => (Prediction?)null,
            "v" or "v_prediction" => Prediction.V,
            "eps" or "epsilon" => Prediction.Epsilon,
            var p => throw new UserErrorException($"--prediction must be eps or v, got '{p}'"),
        };

        // settings from a PNG first, then explicit options on top
        var request = new GenerationRequest();
        GenerationParameters? fromPng = null;
        if (a.Get("from-png") is { } png)
        {
            var text = ImageFiles.ReadTextChunks(png);
            if (!text.TryGetValue(ImageFiles.ParametersKey, out var parameters))
                throw new UserErrorException($"{png}: no '{ImageFiles.ParametersKey}' text in this PNG");
            fromPng = GenerationParameters.Parse(parameters);
            request = fromPng.ApplyTo(request);
        }
        else if (a.Get("prompt") is null && demo is null) throw new UserErrorException("'generate' needs --prompt (or --from-png)");
        if (demo is not null && a.Get("prompt") is null) request = request with { Prompt = DemoAssets.DefaultPrompt };

        CheckBeforeLoading(a);
        var dtype = Runtime.Compute.ParseDType(a.Get("dtype"));
        int threads = Runtime.Compute.SetThreads(a.Get("threads") is null ? null : a.GetInt("threads", 0));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var model = CheckpointLoader.Load(modelPath, new LoadOptions
        {
            ConfigDir = a.Get("config") ?? demo?.ConfigDir, TokenizerDir = a.Get("tokenizer"), Prediction = prediction, DType = dtype,
            Device = Runtime.Compute.ParseDevice(a.Get("device") ?? "cpu"),
        });
        bool quiet = a.Flag("quiet");
        if (!quiet)
            stderr.WriteLine($"loaded {model.Family.Id()}{(model.Inpainting ? " inpainting" : "")} model {modelPath} in {sw.Elapsed.TotalSeconds:F1} s " +
                             $"({Runtime.Compute.Name(dtype)}, {threads} threads)");

        request = Apply(a, request, model, fromPng is not null);
        if (demo is not null && a.Get("width") is null && a.Get("height") is null && fromPng is null)
            request = request with { Width = DemoAssets.Size, Height = DemoAssets.Size };
        int batch = a.GetInt("batch-count", 1);
        if (batch < 1) throw new UserErrorException($"--batch-count must be 1 or more, got {batch}");
        bool crop = a.Flag("inpaint-crop");
        CropOptions? cropOptions = null;
        if (crop)
        {
            // the image keeps its own size; only the crop around the mask is generated, at the working size
            if (a.Get("init-image") is not { } image || a.Get("mask") is not { } cropMask)
                throw new UserErrorException("--inpaint-crop needs --init-image and --mask");
            if (a.Get("save-latent") is not null) throw new UserErrorException("--save-latent is not available with --inpaint-crop");
            var initTensor = ImageFiles.LoadRgb(image);
            request = request with
            {
                InitImage = initTensor,
                Mask = ImageFiles.LoadMask(cropMask, (int)initTensor.shape[3], (int)initTensor.shape[2]),
                Width = (int)initTensor.shape[3],
                Height = (int)initTensor.shape[2],
            };
            cropOptions = new CropOptions
            {
                ContextMargin = a.GetInt("crop-context", new CropOptions().ContextMargin),
                WorkingSize = a.GetInt("crop-size", model.Family.DefaultSize()),
            };
            cropOptions.Validate();
        }
        else
        {
            if (a.Get("init-image") is { } init)
                request = request with { InitImage = ImageFiles.LoadRgb(init, request.Width, request.Height) };
            if (a.Get("mask") is { } mask)
                request = request with { Mask = ImageFiles.LoadMask(mask, request.Width, request.Height) };
            request.Validate();
        }

        // LoRAs: tags in the prompts (removed before encoding) and --lora options
        var (prompt, promptTags) = LoraTags.Extract(request.Prompt);
        var (negative, negativeTags) = LoraTags.Extract(request.Negative);
        var selector = new LoraSelector(new LoraLibrary(a.Get("lora-dir") ?? demo?.LoraDir ?? Path.Combine("models", "Lora")), new LoraTargets(model), FileHashes.Default);
        var loras = selector.Select(promptTags.Concat(negativeTags), a.GetAll("lora").Select(LoraTags.ParseOption),
                                    LoraSelector.ParseHashes(fromPng?.Get("Lora hashes")));
        using var patcher = new LoraPatcher();
        // strengths of step 0 now; schedules move them before each model call
        var loraRun = new LoraRun(patcher, loras, request.LoraMode);
        loraRun.Start(request.Steps);
        foreach (var l in loras)
        {
            var unmatched = l.Application.Plan.Unmatched;
            if (!quiet) stderr.WriteLine($"LoRA {l.Name} ({l.Application.Plan.File.Algorithm.Id()}): unet {l.Tag.UNetSchedule?.ToString() ?? l.Tag.UNet.ToString(CultureInfo.InvariantCulture)}, te {l.Tag.TextEncoder}, {l.Application.Plan.Matched.Count} layers");
            // a partial fit is worth knowing even with --quiet (that only silences progress)
            if (unmatched.Count > 0)
                stderr.WriteLine($"warning: LoRA {l.Name}: {unmatched.Count} keys match no layer of this model (e.g. {string.Join(", ", unmatched.Take(3))})");
        }
        // what the PNG records: the prompt with every LoRA as a tag, so --from-png reruns it
        string recordedPrompt = string.Join(" ", new[] { request.Prompt }.Concat(loras.Skip(promptTags.Count + negativeTags.Count).Select(LoraSelector.TagFor)));
        var extra = loras.Count > 0 ? new List<KeyValuePair<string, string>> { new("Lora hashes", selector.HashesText(loras)) } : null;

        string modelName = Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(modelPath));
        string? modelHash = File.Exists(modelPath) ? FileHashes.Default.ModelHash(modelPath) : null;
        for (int i = 0; i < batch; i++)
        {
            var job = request with { Seed = request.Seed + i, Prompt = prompt, Negative = negative };
            string target = batch == 1 ? outPath : NumberedPath(outPath, i + 1);
            var progress = quiet ? null : new ProgressBar(stderr, batch == 1 ? "sampling" : $"image {i + 1}/{batch}");
            var sampler = new SamplerContext(progress, cancel) { BeforeModelCall = loraRun.Scheduled ? loraRun.BeforeModelCall : null };
            using var result = crop ? null : StableDiffusionPipeline.Generate(model, job, sampler);
            using var stitched = crop ? CropAndStitch.Inpaint(model, job, cropOptions, sampler) : null;
            if (stitched is not null && !quiet)
                stderr.WriteLine($"inpainted crop {stitched.Box.Width}x{stitched.Box.Height} at ({stitched.Box.X},{stitched.Box.Y}) at {stitched.WorkingWidth}x{stitched.WorkingHeight}");
            var parameters = GenerationParameters.Describe(job with { Prompt = recordedPrompt, Negative = request.Negative }, modelName, modelHash, Version, extra);
            ImageFiles.SavePng(target, result?.Image ?? stitched!.Image, new Dictionary<string, string> { [ImageFiles.ParametersKey] = parameters.Format() });
            if (result is not null && a.Get("save-latent") is { } latentPath)
            {
                string lp = batch == 1 ? latentPath : NumberedPath(latentPath, i + 1);
                SafetensorsWriter.Write(lp, [new("latent", result.Latent)], new Dictionary<string, string> { ["parameters"] = parameters.Format() });
            }
            stdout.WriteLine($"{target} (seed {job.Seed})");
        }
        return 0;
    }

    /// <summary>Mistakes that need no model to spot are reported before the (slow) load.</summary>
    static void CheckBeforeLoading(Args a)
    {
        foreach (var dim in new[] { "width", "height" })
            if (a.Get(dim) is not null && a.GetInt(dim, 0) is var v && (v <= 0 || v % 8 != 0))
                throw new UserErrorException($"--{dim} must be a positive multiple of 8, got {v}");
        if (a.Get("steps") is not null && a.GetInt("steps", 0) < 1) throw new UserErrorException($"--steps must be 1 or more, got {a.Get("steps")}");
        if (a.Get("cfg") is not null && a.GetDouble("cfg", 0) < 0) throw new UserErrorException($"--cfg must be 0 or more, got {a.Get("cfg")}");
        if (a.Get("denoise") is not null && a.GetDouble("denoise", 0) is var d && (d <= 0 || d > 1))
            throw new UserErrorException($"--denoise must be in (0, 1], got {a.Get("denoise")}");
        if (a.Get("sampler") is not null || a.Get("scheduler") is not null) SamplerNames.Resolve(a.Get("sampler") ?? "euler_ancestral", a.Get("scheduler"));
        if (a.Get("lora-mode") is { } loraMode) LoraModes.Parse(loraMode);
        if (a.Get("mask") is { } mask)
        {
            if (a.Get("init-image") is not { } init) throw new UserErrorException("--mask needs --init-image");
            var (mw, mh) = ImageFiles.Size(mask);
            var (iw, ih) = ImageFiles.Size(init);
            // a mask of another shape is almost always the wrong file; same aspect ratio is resized
            if ((long)mw * ih != (long)iw * mh)
                throw new UserErrorException($"mask {mask} is {mw}x{mh} but the init image is {iw}x{ih}: their aspect ratios differ");
        }
        foreach (var file in new[] { "init-image", "mask", "from-png" })
            if (a.Get(file) is { } path && !File.Exists(path)) throw new FileNotFoundException($"--{file}: file not found: {path}", path);
    }

    static GenerationRequest Apply(Args a, GenerationRequest r, StableDiffusionModel model, bool fromPng)
    {
        if (a.Get("prompt") is { } prompt) r = r with { Prompt = prompt };
        if (a.Get("negative") is { } negative) r = r with { Negative = negative };
        if (a.GetLong("seed") is { } seed) r = r with { Seed = seed };
        else if (!fromPng) r = r with { Seed = Random.Shared.NextInt64(0, uint.MaxValue) };
        if (a.Get("steps") is not null) r = r with { Steps = a.GetInt("steps", r.Steps) };
        if (a.Get("cfg") is not null) r = r with { Cfg = a.GetDouble("cfg", r.Cfg) };
        // "Euler a", "DPM++ 2M Karras", "dpmpp_2m" ...; --scheduler overrides the name's schedule
        if (a.Get("sampler") is not null || a.Get("scheduler") is not null)
        {
            var (sampler, scheduler) = SamplerNames.Resolve(a.Get("sampler") ?? r.Sampler, a.Get("scheduler"));
            r = r with { Sampler = sampler, Scheduler = scheduler };
        }
        int size = model.Family.DefaultSize();
        if (model.Family == ModelFamily.Sd2 && model.Prediction == Prediction.Epsilon) size = 512;
        if (!fromPng) r = r with { Width = size, Height = size };
        if (a.Get("width") is not null) r = r with { Width = a.GetInt("width", r.Width) };
        if (a.Get("height") is not null) r = r with { Height = a.GetInt("height", r.Height) };
        if (a.Get("clip-skip") is not null) r = r with { ClipSkip = a.GetInt("clip-skip", r.ClipSkip) };
        if (a.Get("denoise") is not null) r = r with { Denoise = a.GetDouble("denoise", r.Denoise) };
        else if (!fromPng && a.Get("init-image") is not null && a.Get("mask") is null) r = r with { Denoise = 0.75 };
        if (a.Get("lora-mode") is { } mode) r = r with { LoraMode = LoraModes.Parse(mode) };
        return r with { VaeTiling = Models.Vae.VaeTiling.Parse(a.Get("vae-tiling")) };
    }

    /// <summary>out.png -> out-2.png for the i-th image of a batch.</summary>
    static string NumberedPath(string path, int index) =>
        Path.Combine(Path.GetDirectoryName(path) ?? "", $"{Path.GetFileNameWithoutExtension(path)}-{index}{Path.GetExtension(path)}");
}
