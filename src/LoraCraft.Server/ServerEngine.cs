using LoraCraft.Generation;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Pipelines;

namespace LoraCraft.Server;

/// <summary>
/// The server's one engine, shared by every API: the checkpoint catalog, the model cache, the
/// generation service, the job queue (one worker thread), the outputs folder and A1111's current
/// checkpoint. The route files translate their requests into <see cref="GenerationJob"/>s and
/// submit them here; no generation logic lives in a handler.
/// </summary>
public sealed class ServerEngine : IDisposable
{
    readonly object _lock = new();
    string? _currentModel;

    public ServerEngine(ServerOptions options)
    {
        Options = options;
        Hashes = FileHashes.Default;
        Catalog = new ModelCatalog(options.CheckpointsDir, Hashes);
        Models = new ModelCache(new ModelCacheOptions { MaxModels = options.MaxModels, DType = options.DType, Device = options.Device });
        Service = new GenerationService(new GenerationServiceOptions
        {
            Catalog = Catalog, AllowPaths = false, LoraDir = options.LoraDir, EmbeddingsDir = options.EmbeddingsDir,
            Hashes = Hashes, Version = options.Version, AvailableMemory = options.AvailableMemory ?? Runtime.SystemMemory.AvailableBytes,
        }, Models);
        var queue = new JobQueueOptions { Limit = options.QueueLimit, Workers = 1 };
        Queue = options.QueueTransport is { } transport ? new RemoteJobQueue(transport, queue) : new JobQueue(queue);
        Outputs = new OutputStore(options.OutputsDir);
    }

    public ServerOptions Options { get; }
    public FileHashes Hashes { get; }
    public ModelCatalog Catalog { get; }
    public ModelCache Models { get; }
    public GenerationService Service { get; }
    public LoraLibrary Loras => Service.Loras;
    /// <summary>In-process worker threads, or workers elsewhere when <see cref="ServerOptions.QueueTransport"/> is set.</summary>
    public IJobQueue Queue { get; }
    public OutputStore Outputs { get; }

    /// <summary>
    /// The checkpoint used when a request names none: the one chosen last (A1111's
    /// sd_model_checkpoint), else the first of the folder.
    /// </summary>
    public CheckpointEntry CurrentModel
    {
        get
        {
            lock (_lock)
            {
                if (_currentModel is not null) return Catalog.Resolve(_currentModel);
                return Catalog.Entries.FirstOrDefault(e => e.Kind != CheckpointKind.Pickle)
                       ?? throw new UserErrorException(ErrorKind.NotFound, $"no checkpoints in {Catalog.Root}: put .safetensors files there") { Field = "model" };
            }
        }
    }

    /// <summary>Chooses the default checkpoint by name, title or hash (A1111's options POST).</summary>
    public CheckpointEntry SelectModel(string name)
    {
        var entry = Catalog.Resolve(name);
        lock (_lock) _currentModel = entry.Name;
        return entry;
    }

    /// <summary>
    /// Checks what only the server limits (image sizes, inputs as data) and queues the job. Where
    /// <paramref name="saveAs"/> is txt2img or img2img the images are also written to the outputs folder.
    /// </summary>
    public Job Submit(GenerationJob job, string? saveAs, string? owner = null, object? request = null, string? id = null)
    {
        job = job with { Model = string.IsNullOrEmpty(job.Model) ? CurrentModel.Name : job.Model };
        GenerationService.Validate(job);
        CheckSizes(job);
        // an unknown model or LoRA is a 4xx now, not a failed job later; workers get the catalog's name
        job = job with { Model = Service.ResolveModel(job.Model).Name };
        Service.CheckLoras(job);
        return Queue.SubmitGeneration(job, Service.Run, output =>
        {
            if (saveAs is null) return new ServerResult(output, []);
            var saved = output.Images.Select(i => Outputs.Save(saveAs, i.Png, i.Seed)).ToList();
            return new ServerResult(output, saved);
        }, request, owner, id);
    }

    void CheckSizes(GenerationJob job)
    {
        int max = Options.MaxImageSide;
        foreach (var (name, side) in new[] { ("width", job.Width), ("height", job.Height), ("working size", job.Inpaint.WorkingSize) })
            if (side > max) throw new UserErrorException($"{name} must be at most {max} on this server, got {side}") { Field = name };
        foreach (var (name, input) in new[] { ("init image", job.InitImage), ("mask", job.Mask) })
        {
            if (input is null) continue;
            if (input.Bytes is null) throw new UserErrorException($"{name}: send the image's data") { Field = name.Replace(' ', '_') };
            var (w, h) = ImageFiles.Size(input.Bytes, name);
            if (w > max || h > max) throw new UserErrorException($"{name} is {w}x{h}; this server takes images up to {max}x{max}") { Field = name.Replace(' ', '_') };
        }
    }

    public void Dispose()
    {
        Queue.Dispose();
        Service.Dispose();
        Models.Dispose();
    }
}

/// <summary>A finished generation job's result on the server: the output and where its images were saved.</summary>
public sealed record ServerResult(GenerationOutput Output, IReadOnlyList<SavedOutput> Saved);
