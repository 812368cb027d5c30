using System.Globalization;

namespace LoraCraft.Lora.Hub;

/// <summary>
/// What the user pasted, understood without any network access: a Civitai model or version, a
/// Hugging Face repo (and maybe a file in it), or a plain URL.
/// </summary>
public abstract record LoraReference
{
    public abstract HubSite Site { get; }

    /// <summary>
    /// Accepts `civitai:VERSION_ID`, Civitai page URLs (`/models/ID[/slug][?modelVersionId=V]`)
    /// and download URLs (`/api/download/models/V`), `hf:OWNER/REPO[/FILE][@REVISION]`, Hugging Face repo,
    /// `/resolve/REV/FILE` and `/blob/REV/FILE` URLs, and any other http(s) URL. Civitai and
    /// Hugging Face URLs are recognised on their own hosts and on the configured base URLs' hosts.
    /// </summary>
    public static LoraReference Parse(string text, HubOptions options)
    {
        text = text.Trim();
        if (text.Length == 0) throw new HubException("no URL or id given");
        if (text.StartsWith("civitai:", StringComparison.OrdinalIgnoreCase))
            return Id(text["civitai:".Length..]) is { } v
                ? new CivitaiReference(null, v)
                : throw new HubException($"'{text}': civitai: takes a model version id (the number after modelVersionId= in a page URL)");
        if (text.StartsWith("hf:", StringComparison.OrdinalIgnoreCase))
        {
            string body = text[3..], revision = "main";
            if (body.LastIndexOf('@') is int at and > 0)
            {
                revision = body[(at + 1)..];
                body = body[..at];
            }
            var parts = body.Trim('/').Split('/');
            if (parts.Length < 2 || parts.Take(2).Any(p => p.Length == 0) || revision.Length == 0)
                throw new HubException($"'{text}': hf: takes OWNER/REPO[/FILE][@REVISION]");
            return new HuggingFaceReference($"{parts[0]}/{parts[1]}", parts.Length > 2 ? string.Join('/', parts[2..]) : null, revision);
        }
        if (!Uri.TryCreate(text, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
            throw new HubException($"'{text}' is not a URL or an id (civitai:VERSION_ID, hf:OWNER/REPO[/FILE], or an http(s) URL)");

        var segments = url.AbsolutePath.Split('/', StringSplitOptions.RemoveEmptyEntries).Select(Uri.UnescapeDataString).ToArray();
        if (IsCivitaiHost(url, options))
        {
            if (segments is ["models", var model, ..] && Id(model) is { } modelId)
                return new CivitaiReference(modelId, Query(url, "modelVersionId") is { } q ? Id(q) : null);
            if (segments is ["api", "download", "models", var version, ..] && Id(version) is { } versionId)
                return new CivitaiReference(null, versionId);
            if (segments is ["api", "v1", "model-versions", var apiVersion, ..] && Id(apiVersion) is { } apiVersionId)
                return new CivitaiReference(null, apiVersionId);
            throw new HubException($"{Shown(url)}: not a Civitai model page or download link (expected /models/ID or /api/download/models/VERSION_ID)");
        }
        if (IsHuggingFaceHost(url, options) && segments.Length >= 2 && segments[0] is not ("api" or "datasets" or "spaces"))
        {
            string repo = $"{segments[0]}/{segments[1]}";
            if (segments.Length >= 5 && segments[2] is "resolve" or "blob")
                return new HuggingFaceReference(repo, string.Join('/', segments[4..]), segments[3]);
            if (segments.Length == 2) return new HuggingFaceReference(repo, null, "main");
            if (segments.Length >= 4 && segments[2] == "tree") return new HuggingFaceReference(repo, null, segments[3]);
        }
        return new UrlReference(url);
    }

    static bool IsCivitaiHost(Uri url, HubOptions options) =>
        SameHost(url, options.CivitaiBase) || url.Host is "civitai.com" or "www.civitai.com" or "civitai.green" or "www.civitai.green";

    static bool IsHuggingFaceHost(Uri url, HubOptions options) =>
        SameHost(url, options.HuggingFaceBase) || url.Host is "huggingface.co" or "www.huggingface.co" or "hf.co";

    static bool SameHost(Uri a, Uri b) => a.Authority.Equals(b.Authority, StringComparison.OrdinalIgnoreCase);

    static long? Id(string s) => long.TryParse(s.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long v) && v > 0 ? v : null;

    static string? Query(Uri url, string key)
    {
        foreach (var pair in url.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = pair.IndexOf('=');
            if (eq > 0 && Uri.UnescapeDataString(pair[..eq]) == key) return Uri.UnescapeDataString(pair[(eq + 1)..]);
        }
        return null;
    }

    /// <summary>A URL as it may be printed: without its query, where signatures and `?token=` live.</summary>
    public static string Shown(Uri url) => url.GetLeftPart(UriPartial.Path) + (url.Query.Length > 1 ? "?…" : "");
}

/// <summary>A Civitai model (its newest version when <see cref="VersionId"/> is null) or model version.</summary>
public sealed record CivitaiReference(long? ModelId, long? VersionId) : LoraReference
{
    public override HubSite Site => HubSite.Civitai;
    public override string ToString() => VersionId is { } v ? $"civitai:{v}" : $"civitai model {ModelId}";
}

/// <summary>A Hugging Face model repo at a revision, and the file in it when given.</summary>
public sealed record HuggingFaceReference(string Repo, string? File, string Revision) : LoraReference
{
    public override HubSite Site => HubSite.HuggingFace;
    public override string ToString() => "hf:" + Repo + (File is null ? "" : "/" + File) + (Revision == "main" ? "" : "@" + Revision);
}

/// <summary>Any other http(s) URL.</summary>
public sealed record UrlReference(Uri Url) : LoraReference
{
    public override HubSite Site => HubSite.Url;
    public override string ToString() => Shown(Url);
}
