using System.Globalization;
using LoraCraft.Generation;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Pipelines;
using TorchSharp;

namespace LoraCraft.Cli.Commands;

/// <summary>`loracraft generate`: flags in, <see cref="GenerationService"/> does the work, PNGs out.</summary>
public static class GenerateCommand
{
    public const string Version = "loracraft 0.1.0";

    public static readonly string[] Flags = ["quiet", "inpaint-crop", "demo", "old-scheduling"];
    public static readonly string[] Options =
    [
        "model", "config", "tokenizer", "prompt", "negative", "seed", "steps", "cfg", "sampler", "scheduler",
        "width", "height", "clip-skip", "init-image", "denoise", "mask", "crop-context", "crop-size",
        "batch-count", "out", "save-latent", "from-png", "prediction", "lora", "lora-dir", "lora-mode", "dtype", "threads", "vae-tiling", "device",
        "memory-limit", "embeddings-dir", "prompt-style", "noise", "noise-convention", "subseed", "subseed-strength",
    ];

    public static int Run(string[] argv, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        var a = new Args("generate", argv, Flags, Options);
        if (a.Positionals.Count > 0) throw new UserErrorException($"unexpected argument '{a.Positionals[0]}' (the prompt goes after --prompt)");
        string outPath = a.Require("out");
        if (!outPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase)) throw new UserErrorException($"--out must name a .png file, got '{outPath}'");
        bool quiet = a.Flag("quiet"), crop = a.Flag("inpaint-crop");
        // --demo: a tiny random model and LoRA made once, for a first run without a checkpoint
        DemoAssets? demo = null;
        if (a.Flag("demo"))
        {
            if (a.Get("model") is not null) throw new UserErrorException("--demo brings its own model; drop --model (or --demo)");
            demo = DemoAssets.Ensure(Path.Combine(Runtime.Paths.CacheRoot, "demo"), stderr);
            stderr.WriteLine("DEMO: a tiny model with RANDOM weights — the picture is noise. For real images: --model YOUR_CHECKPOINT.safetensors");
        }
        var job = new GenerationJob { Model = demo?.Model ?? a.Require("model"), ConfigDir = a.Get("config") ?? demo?.ConfigDir, TokenizerDir = a.Get("tokenizer") };
        if (a.Get("from-png") is { } png) job = job.WithParameters(FromPng(png));
        else if (a.Get("prompt") is null && demo is null) throw new UserErrorException("'generate' needs --prompt (or --from-png)");
        if (demo is not null && a.Get("prompt") is null) job = job with { Prompt = DemoAssets.DefaultPrompt };
        if (demo is not null && a.Get("width") is null && a.Get("height") is null && a.Get("from-png") is null) job = job with { Width = DemoAssets.Size, Height = DemoAssets.Size };
        if (crop && (a.Get("init-image") is null || a.Get("mask") is null)) throw new UserErrorException("--inpaint-crop needs --init-image and --mask");
        if (crop && a.Get("save-latent") is not null) throw new UserErrorException("--save-latent is not available with --inpaint-crop");
        job = GenerateArgs.Apply(a, job) with { ReturnLatents = a.Get("save-latent") is not null };
        GenerationService.Validate(job); // mistakes that need no model are reported before the (slow) load

        int threads = Runtime.Compute.SetThreads(a.Get("threads") is null ? null : a.GetInt("threads", 0));
        using var models = new ModelCache(new ModelCacheOptions
        {
            DType = Runtime.Compute.ParseDType(a.Get("dtype")), Device = Runtime.Compute.ParseDevice(a.Get("device") ?? "cpu"),
        });
        using var service = new GenerationService(new GenerationServiceOptions
        {
            AllowPaths = true, LoraDir = a.Get("lora-dir") ?? demo?.LoraDir ?? Path.Combine("models", "Lora"),
            EmbeddingsDir = a.Get("embeddings-dir") ?? Text.Embeddings.EmbeddingLibrary.DefaultRoot, Version = Version,
        }, models);
        var shown = new Shown(job.BatchCount, outPath, a.Get("save-latent"), quiet, threads, stdout, stderr);
        service.Run(job, new JobContext("cli", shown.Show, cancel));
        return 0;
    }

    /// <summary>Events as the command line shows them; each image is written as soon as it is done.</summary>
    sealed class Shown(int batch, string outPath, string? latentPath, bool quiet, int threads, TextWriter stdout, TextWriter stderr)
    {
        ProgressBar? _bar = quiet ? null : new ProgressBar(stderr, batch == 1 ? "sampling" : "image 1/" + batch);

        public void Show(JobEvent e)
        {
        switch (e)
        {
            case JobMessage m:
                stderr.WriteLine((m.Warning ? "warning: " : "note: ") + m.Text);
                break;
            case JobPhase { Phase: "loaded" } p when !quiet:
                stderr.WriteLine($"loaded {p.Detail}, {threads} threads");
                break;
            case JobPhase { Phase: "loras", Detail: { Length: > 0 } d } when !quiet:
                stderr.WriteLine("LoRA " + d.Replace(", ", "\nLoRA ", StringComparison.Ordinal));
                break;
            case JobPhase { Phase: "prompt" } p when !quiet:
                stderr.WriteLine("prompt editing: " + p.Detail);
                break;
            case JobStep s when _bar is not null:
                _bar.Report(s.Step, s.Steps);
                break;
            case JobImage img:
                string target = batch == 1 ? outPath : NumberedPath(outPath, img.Index + 1);
                if (img.Image.Crop is { } box && !quiet)
                    stderr.WriteLine($"inpainted crop {box.Width}x{box.Height} at ({box.X},{box.Y})");
                AtomicFile.WriteAllBytes(target, img.Image.Png);
                if (latentPath is not null && img.Image.Latent is { } latent)
                {
                    using var tensor = torch.tensor(latent.Values, latent.Shape);
                    SafetensorsWriter.Write(batch == 1 ? latentPath : NumberedPath(latentPath, img.Index + 1), [new("latent", tensor)],
                                            new Dictionary<string, string> { ["parameters"] = img.Image.Infotext });
                }
                stdout.WriteLine($"{target} (seed {img.Image.Seed})");
                if (!quiet && img.Index + 1 < batch) _bar = new ProgressBar(stderr, $"image {img.Index + 2}/{batch}");
                break;
        }
        }
    }

    static GenerationParameters FromPng(string png)
    {
        if (!File.Exists(png)) throw new FileNotFoundException($"--from-png: file not found: {png}", png);
        var text = ImageFiles.ReadTextChunks(png);
        if (!text.TryGetValue(ImageFiles.ParametersKey, out var parameters))
            throw new UserErrorException($"{png}: no '{ImageFiles.ParametersKey}' text in this PNG");
        return GenerationParameters.Parse(parameters);
    }

    /// <summary>out.png -> out-2.png for the i-th image of a batch.</summary>
    static string NumberedPath(string path, int index) =>
        Path.Combine(Path.GetDirectoryName(path) ?? "", $"{Path.GetFileNameWithoutExtension(path)}-{index}{Path.GetExtension(path)}");
}
