namespace LoraCraft.Lora.Hub;

/// <summary>
/// Where the sites are and how to talk to them. Base URLs may point at mirrors (or at a local
/// test server). A token is sent only as an `Authorization: Bearer` header and only to its own
/// site's host (never to a CDN a download redirects to, never in a URL).
/// </summary>
public sealed record HubOptions
{
    public const string DefaultCivitaiUrl = "https://civitai.com";
    public const string DefaultHuggingFaceUrl = "https://huggingface.co";

    public string CivitaiUrl { get; init; } = DefaultCivitaiUrl;
    public string HuggingFaceUrl { get; init; } = DefaultHuggingFaceUrl;
    public string? CivitaiToken { get; init; }
    public string? HuggingFaceToken { get; init; }
    /// <summary>For a plain URL: sent to that URL's host only.</summary>
    public string? UrlToken { get; init; }

    /// <summary>How long to wait for a server's answer (headers) to one request.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>A download that receives nothing for this long is cut and resumed.</summary>
    public TimeSpan StallTimeout { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>Tries per download; each one after a cut connection resumes where the last stopped.</summary>
    public int MaxAttempts { get; init; } = 5;
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>The tokens in the environment: CIVITAI_TOKEN (or CIVITAI_API_KEY), HF_TOKEN (or HUGGING_FACE_HUB_TOKEN).</summary>
    public HubOptions WithEnvironmentTokens() => this with
    {
        CivitaiToken = CivitaiToken ?? Env("CIVITAI_TOKEN") ?? Env("CIVITAI_API_KEY"),
        HuggingFaceToken = HuggingFaceToken ?? Env("HF_TOKEN") ?? Env("HUGGING_FACE_HUB_TOKEN"),
    };

    /// <summary>Without the tokens: an options object may end up in a log.</summary>
    public override string ToString() =>
        $"HubOptions {{ CivitaiUrl = {CivitaiUrl}, HuggingFaceUrl = {HuggingFaceUrl}, tokens: civitai {(CivitaiToken is null ? "no" : "yes")}, " +
        $"hf {(HuggingFaceToken is null ? "no" : "yes")}, url {(UrlToken is null ? "no" : "yes")} }}";

    static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v.Trim() : null;

    internal Uri CivitaiBase => Base(CivitaiUrl, "Civitai");
    internal Uri HuggingFaceBase => Base(HuggingFaceUrl, "Hugging Face");

    static Uri Base(string url, string site) =>
        Uri.TryCreate(url.TrimEnd('/') + "/", UriKind.Absolute, out var u) && u.Scheme is "http" or "https"
            ? u
            : throw new HubException($"the {site} base URL '{url}' is not an http(s) URL");
}
