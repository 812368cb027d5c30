namespace LoraCraft.Generation;

/// <summary>What a running job tells its observers (progress bars, SSE, WebSocket, A1111's /progress).</summary>
public abstract record JobEvent(string JobId)
{
    public DateTimeOffset Time { get; init; } = DateTimeOffset.UtcNow;
}

public sealed record JobQueued(string JobId, int Position) : JobEvent(JobId);
public sealed record JobStarted(string JobId) : JobEvent(JobId);
/// <summary>A phase of the work: loading the model, encoding the prompt, sampling, decoding, training …</summary>
public sealed record JobPhase(string JobId, string Phase, string? Detail = null) : JobEvent(JobId);
/// <summary>
/// One finished step of image <see cref="Image"/> (0-based) of <see cref="Images"/>. The preview is
/// a small PNG from the latent (<see cref="LatentPreview"/>) on every n-th step when asked for.
/// </summary>
public sealed record JobStep(string JobId, int Step, int Steps, int Image, int Images, double SecondsPerStep, double EtaSeconds, byte[]? Preview = null)
    : JobEvent(JobId)
{
    /// <summary>0..1 over the whole job.</summary>
    public double Progress => Images * Steps == 0 ? 0 : (Image * Steps + Step) / (double)(Images * Steps);
}
/// <summary>A message worth showing (a size rounded, tiling turned on, a LoRA that partly fits).</summary>
public sealed record JobMessage(string JobId, string Text, bool Warning) : JobEvent(JobId);
/// <summary>Image <see cref="Index"/> is done.</summary>
public sealed record JobImage(string JobId, int Index, GeneratedImage Image) : JobEvent(JobId);
public sealed record JobCompleted(string JobId, object? Result) : JobEvent(JobId);
public sealed record JobFailed(string JobId, ErrorKind? Kind, string Message) : JobEvent(JobId);
public sealed record JobCancelled(string JobId) : JobEvent(JobId);
