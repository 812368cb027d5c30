using LoraCraft.Generation;
using LoraCraft.IO;
using LoraCraft.Redis;

namespace LoraCraft.Cli.Commands;

/// <summary>`loracraft worker`: runs the jobs of a `serve --queue` front end, taken from Redis, until Ctrl-C.</summary>
public static class WorkerCommand
{
    public static readonly string[] Flags = ["quiet"];
    public static readonly string[] Options =
    [
        "queue", "ckpt-dir", "lora-dir", "embeddings-dir", "name", "dtype", "threads", "device", "max-models",
        "claim-timeout", "max-wait", "max-jobs",
    ];

    public static int Run(string[] argv, TextWriter stdout, TextWriter stderr, CancellationToken stop)
    {
        var a = new Args("worker", argv, Flags, Options);
        if (a.Positionals.Count > 0) throw new UserErrorException($"unexpected argument '{a.Positionals[0]}'");
        var address = RedisQueueAddress.Parse(a.Get("queue") ?? throw new UserErrorException("worker needs --queue redis://HOST:PORT (the front end's)"));
        string ckpt = a.Get("ckpt-dir") ?? Path.Combine("models", "Stable-diffusion");
        if (!Directory.Exists(ckpt)) throw new UserErrorException($"--ckpt-dir {ckpt}: no such folder");
        int maxModels = a.GetInt("max-models", 1);
        if (maxModels < 1) throw new UserErrorException($"--max-models must be 1 or more, got {maxModels}");
        double claim = Seconds(a, "claim-timeout", 30), wait = Seconds(a, "max-wait", 60);
        if (claim < 1) throw new UserErrorException($"--claim-timeout must be 1 second or more, got {claim}");
        int maxJobs = a.GetInt("max-jobs", int.MaxValue);
        Runtime.Compute.SetThreads(a.Get("threads") is null ? null : a.GetInt("threads", 0));

        var hashes = FileHashes.Default;
        using var models = new ModelCache(new ModelCacheOptions
        {
            MaxModels = maxModels, DType = Runtime.Compute.ParseDType(a.Get("dtype")), Device = Runtime.Compute.ParseDevice(a.Get("device") ?? "cpu"),
        });
        using var service = new GenerationService(new GenerationServiceOptions
        {
            Catalog = new ModelCatalog(ckpt, hashes), AllowPaths = false, Hashes = hashes, Version = GenerateCommand.Version,
            LoraDir = a.Get("lora-dir") ?? Path.Combine("models", "Lora"), EmbeddingsDir = a.Get("embeddings-dir") ?? Path.Combine("models", "embeddings"),
        }, models);
        bool quiet = a.Flag("quiet");
        using var worker = new RedisWorker(address, service, new RedisWorkerOptions
        {
            Name = a.Get("name") ?? new RedisWorkerOptions().Name,
            ClaimTimeout = TimeSpan.FromSeconds(claim), MaxWait = TimeSpan.FromSeconds(wait),
        }, quiet ? null : line => stderr.WriteLine(line));
        worker.Run(stop, maxJobs);
        var s = worker.Stats;
        stderr.WriteLine($"worker {worker.Options.Name}: {s.Jobs} jobs ({s.Failed} failed, {s.Reclaimed} taken over), " +
                         $"{s.ModelSwitches} checkpoint switches, {s.LoraSwitches} LoRA set switches");
        return 0;
    }

    static double Seconds(Args a, string name, double fallback)
    {
        var text = a.Get(name);
        if (text is null) return fallback;
        if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) || v < 0 || double.IsNaN(v))
            throw new UserErrorException($"--{name} takes seconds (0 or more), got '{text}'");
        return v;
    }
}
