namespace LoraCraft.Server;

/// <summary>`loracraft serve`'s settings.</summary>
public sealed record ServerOptions
{
    /// <summary>Loopback unless told otherwise; anything else without auth prints a warning.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>7860, as A1111; 0 picks a free port (tests).</summary>
    public int Port { get; init; } = 7860;
    public required string CheckpointsDir { get; init; }
    public string LoraDir { get; init; } = Path.Combine("models", "Lora");
    public string EmbeddingsDir { get; init; } = Path.Combine("models", "embeddings");
    public string OutputsDir { get; init; } = "outputs";
    /// <summary>Settings and user data of the ComfyUI frontend, uploaded inputs (ComfyUI's user/ and input/).</summary>
    public string DataDir { get; init; } = "user";
    /// <summary>Training-data root: POST /api/v1/train takes dataset folders only from here; null: DATA-DIR/train.</summary>
    public string? TrainDir { get; init; }
    public TorchSharp.torch.ScalarType DType { get; init; } = TorchSharp.torch.ScalarType.Float32;
    public TorchSharp.torch.Device? Device { get; init; }
    public int QueueLimit { get; init; } = 64;
    /// <summary>Where generations run when not here: workers behind a shared queue (Redis); null: this process.</summary>
    public LoraCraft.Generation.IJobTransport? QueueTransport { get; init; }
    public int MaxModels { get; init; } = 1;
    /// <summary>HTTP Basic credentials; empty: no authentication.</summary>
    public IReadOnlyList<(string User, string Password)> Auth { get; init; } = [];
    /// <summary>Origins allowed by CORS; empty: none (same-origin only).</summary>
    public IReadOnlyList<string> CorsOrigins { get; init; } = [];
    public long MaxBodyBytes { get; init; } = 50L << 20;
    /// <summary>Largest image side accepted in a request or asked for (4096: 16 MP).</summary>
    public int MaxImageSide { get; init; } = 4096;
    /// <summary>A built ComfyUI frontend (its `static` folder) to serve under /comfy/.</summary>
    public string? ComfyFrontendDir { get; init; }
    /// <summary>Free memory the memory check sees (tests substitute it).</summary>
    public Func<long>? AvailableMemory { get; init; }
    public string Version { get; init; } = "loracraft 0.1.0";
    /// <summary>Civitai / Hugging Face base URLs and tokens for the LoRA downloads (null: the real sites, tokens from the environment).</summary>
    public Lora.Hub.HubOptions? Hub { get; init; }
    /// <summary>Whether `POST /api/v1/lora/get` may download from any http(s) URL (default: Civitai and Hugging Face only).</summary>
    public bool HubAllowUrls { get; init; }
}
