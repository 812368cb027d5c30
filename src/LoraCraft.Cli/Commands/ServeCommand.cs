using LoraCraft.Pipelines;
using LoraCraft.Server;

namespace LoraCraft.Cli.Commands;

/// <summary>`loracraft serve`: the web server (native API, A1111 API, web UI) until Ctrl-C.</summary>
public static class ServeCommand
{
    public static readonly string[] Flags = ["demo", "quiet", "allow-url-downloads"];
    public static readonly string[] Options =
    [
        "host", "port", "ckpt-dir", "lora-dir", "embeddings-dir", "outputs", "data-dir", "dtype", "threads", "device", "queue-limit",
        "api-auth", "cors-allow-origin", "max-models", "max-body-mb", "comfy-frontend", "train-dir",
        "civitai-url", "hf-url", "queue",
    ];

    public static int Run(string[] argv, TextWriter stdout, TextWriter stderr, CancellationToken stop)
    {
        var a = new Args("serve", argv, Flags, Options);
        if (a.Positionals.Count > 0) throw new UserErrorException($"unexpected argument '{a.Positionals[0]}'");
        DemoAssets? demo = a.Flag("demo") ? DemoAssets.Ensure(Path.Combine(Runtime.Paths.CacheRoot, "demo"), stderr) : null;
        string ckpt = a.Get("ckpt-dir") ?? demo?.CheckpointsDir
                      ?? (Directory.Exists(Path.Combine("models", "Stable-diffusion")) || !Directory.Exists(Path.Combine("models", "checkpoints"))
                          ? Path.Combine("models", "Stable-diffusion") : Path.Combine("models", "checkpoints"));
        int port = a.GetInt("port", 7860);
        if (port is < 0 or > 65535) throw new UserErrorException($"--port must be 0 to 65535, got {port}");
        int limit = a.GetInt("queue-limit", 64);
        if (limit < 1) throw new UserErrorException($"--queue-limit must be 1 or more, got {limit}");
        var options = new ServerOptions
        {
            Host = a.Get("host") ?? "127.0.0.1", Port = port, CheckpointsDir = ckpt,
            LoraDir = a.Get("lora-dir") ?? demo?.LoraDir ?? Path.Combine("models", "Lora"),
            EmbeddingsDir = a.Get("embeddings-dir") ?? Path.Combine("models", "embeddings"),
            OutputsDir = a.Get("outputs") ?? "outputs", DataDir = a.Get("data-dir") ?? "user", TrainDir = a.Get("train-dir"),
            DType = Runtime.Compute.ParseDType(a.Get("dtype")), Device = Runtime.Compute.ParseDevice(a.Get("device") ?? "cpu"),
            QueueLimit = limit, MaxModels = a.GetInt("max-models", 1), Auth = ParseAuth(a.Get("api-auth")),
            CorsOrigins = a.Get("cors-allow-origin")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [],
            MaxBodyBytes = (long)a.GetInt("max-body-mb", 50) << 20, ComfyFrontendDir = a.Get("comfy-frontend"),
            Version = GenerateCommand.Version,
            // LoRA downloads: base URLs here, tokens only from the environment (CIVITAI_TOKEN, HF_TOKEN)
            Hub = HubArgs.Urls(a), HubAllowUrls = a.Flag("allow-url-downloads"),
        };
        if (options.MaxModels < 1) throw new UserErrorException($"--max-models must be 1 or more, got {options.MaxModels}");
        if (options.ComfyFrontendDir is { } dir && !File.Exists(Path.Combine(dir, "index.html")))
            throw new UserErrorException($"--comfy-frontend {dir}: no index.html there (give the frontend's built folder, e.g. the wheel's static/)");
        Runtime.Compute.SetThreads(a.Get("threads") is null ? null : a.GetInt("threads", 0));
        // --queue redis://…: generations go to workers (loracraft worker) through Redis
        using var transport = a.Get("queue") is { } queue ? new Redis.RedisJobTransport(Redis.RedisQueueAddress.Parse(queue)) : null;
        if (transport is not null)
        {
            options = options with { QueueTransport = transport };
            stderr.WriteLine($"generations go to the workers of {transport.Describe}");
        }
        try
        {
            LoraServer.RunAsync(options, stderr, stop).GetAwaiter().GetResult();
        }
        catch (IOException e) when (e.InnerException is System.Net.Sockets.SocketException || e.Message.Contains("address", StringComparison.OrdinalIgnoreCase))
        {
            throw new UserErrorException($"cannot listen on {options.Host}:{options.Port}: {e.Message}");
        }
        return 0;
    }

    /// <summary>USER:PASS[,USER:PASS] (A1111's --api-auth).</summary>
    static IReadOnlyList<(string, string)> ParseAuth(string? text)
    {
        if (string.IsNullOrEmpty(text)) return [];
        return text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(pair =>
        {
            int colon = pair.IndexOf(':');
            if (colon <= 0 || colon == pair.Length - 1) throw new UserErrorException($"--api-auth takes USER:PASS[,USER:PASS], got '{pair}'");
            return (pair[..colon], pair[(colon + 1)..]);
        }).ToList();
    }
}
