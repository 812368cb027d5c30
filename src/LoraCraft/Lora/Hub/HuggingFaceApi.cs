using System.Globalization;
using System.Text.Json.Nodes;
using LoraCraft.Models;

namespace LoraCraft.Lora.Hub;

/// <summary>A file in a Hugging Face repo; LFS files carry their SHA-256 and exact size.</summary>
public sealed record HuggingFaceFile(string Path, long? Size, string? Sha256);

/// <summary>
/// A Hugging Face model repo as `/api/models/{repo}?blobs=true` describes it: the commit, the
/// files, and from the model card the base model, the DreamBooth `instance_prompt` (the trigger
/// words of diffusers-trained LoRAs) and the widget's example images.
/// </summary>
public sealed record HuggingFaceRepo(
    string Id, string? Commit, IReadOnlyList<HuggingFaceFile> Files, string? BaseModel, string? InstancePrompt,
    IReadOnlyList<string> WidgetImages, IReadOnlyList<string> Tags, long? Downloads);

/// <summary>
/// The Hugging Face hub API (huggingface.co/docs/hub/api): repo info, file URLs
/// (`/{repo}/resolve/{revision}/{path}`) and the model search.
/// </summary>
internal sealed class HuggingFaceApi(HubHttp http)
{
    static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".webp"];

    public Uri Base => http.Options.HuggingFaceBase;
    string? Token => http.Options.HuggingFaceToken;

    public async Task<HuggingFaceRepo> GetRepoAsync(string repo, string revision, CancellationToken ct)
    {
        string path = $"api/models/{EscapePath(repo)}" + (revision == "main" ? "" : $"/revision/{Uri.EscapeDataString(revision)}") + "?blobs=true";
        using var doc = await http.GetJsonAsync(new Uri(Base, path), Token, Base, ct)
                        ?? throw new HubException($"Hugging Face has no model repo {repo}" + (revision == "main" ? "" : $" at {revision}") +
                                                  (Token is null ? " (a private or gated repo needs a token: HF_TOKEN)" : ""));
        if (JsonNode.Parse(doc.RootElement.GetRawText()) is not JsonObject o) throw new HubException($"Hugging Face's answer for {repo} is not a JSON object");
        var files = (o["siblings"] as JsonArray ?? []).OfType<JsonObject>()
            .Where(s => CivitaiVersion.Str(s, "rfilename") is not null)
            .Select(s =>
            {
                var lfs = s["lfs"] as JsonObject;
                return new HuggingFaceFile(CivitaiVersion.Str(s, "rfilename")!,
                    lfs is not null ? CivitaiVersion.Long(lfs, "size") : CivitaiVersion.Long(s, "size"),
                    lfs is not null ? CivitaiVersion.Str(lfs, "sha256")?.ToLowerInvariant() : null);
            }).ToList();
        var card = o["cardData"] as JsonObject;
        var tags = (o["tags"] as JsonArray ?? []).Select(t => t is JsonValue v && v.TryGetValue(out string? s) ? s : null).OfType<string>().ToList();
        string? baseModel = card?["base_model"] switch
        {
            JsonValue v when v.TryGetValue(out string? s) => s,
            JsonArray a => a.Select(x => x is JsonValue v && v.TryGetValue(out string? s) ? s : null).FirstOrDefault(s => s is not null),
            _ => null,
        } ?? BaseModels.HuggingFaceBaseFromTags(tags);
        var widget = (card?["widget"] as JsonArray ?? []).OfType<JsonObject>()
            .Select(w => (w["output"] as JsonObject) is { } output ? CivitaiVersion.Str(output, "url") : null).OfType<string>().ToList();
        // without widget images, the first image file of the repo
        if (widget.Count == 0) widget.AddRange(files.Select(f => f.Path).Where(p => ImageExtensions.Any(e => p.EndsWith(e, StringComparison.OrdinalIgnoreCase))).Take(1));
        return new HuggingFaceRepo(CivitaiVersion.Str(o, "id") ?? repo, CivitaiVersion.Str(o, "sha"), files, baseModel,
            card is null ? null : CivitaiVersion.Str(card, "instance_prompt"), widget, tags, CivitaiVersion.Long(o, "downloads"));
    }

    /// <summary>
    /// A file's size, SHA-256 and commit from the hub's own answer to a HEAD of its resolve URL
    /// (not followed to the CDN): `X-Linked-Size`, and `X-Linked-Etag`, which for an LFS file is
    /// its SHA-256 (a small git file's ETag is a git hash, not used), `X-Repo-Commit`.
    /// </summary>
    public async Task<HuggingFaceFile> FileMetadataAsync(string repo, string revision, string path, CancellationToken ct)
    {
        var url = FileUrl(repo, revision, path);
        try
        {
            using var response = await http.SendAsync(HttpMethod.Head, url, Token, Base, null, ct, followRedirects: false);
            if (!response.IsSuccessStatusCode && (int)response.StatusCode is < 300 or >= 400)
                throw await http.Failed(url, response, Token is not null, ct);
            string? Header(string name) => response.Headers.TryGetValues(name, out var values) ? values.FirstOrDefault() : null;
            long? size = long.TryParse(Header("X-Linked-Size"), NumberStyles.None, CultureInfo.InvariantCulture, out long s) ? s
                : response.IsSuccessStatusCode ? response.Content.Headers.ContentLength : null;
            string? etag = (Header("X-Linked-Etag") ?? response.Headers.ETag?.Tag)?.Replace("W/", "", StringComparison.Ordinal).Trim('"').ToLowerInvariant();
            return new HuggingFaceFile(path, size, etag is { Length: 64 } && etag.All(char.IsAsciiHexDigit) ? etag : null);
        }
        catch (HttpRequestException e) { throw http.Unreachable(url, e); }
    }

    /// <summary>Where a file of the repo is downloaded from (its CDN redirect is followed without the token).</summary>
    public Uri FileUrl(string repo, string revision, string path) =>
        new(Base, $"{EscapePath(repo)}/resolve/{Uri.EscapeDataString(revision)}/{EscapePath(path)}");

    /// <summary>Repos tagged `lora` matching <paramref name="query"/>, most downloaded first; a family filters on the card's base model.</summary>
    public async Task<List<LoraSearchHit>> SearchAsync(string query, ModelFamily? family, int limit, CancellationToken ct)
    {
        // the base model is read from each repo's tags: ask for more when some will be filtered out
        int ask = family is null ? limit : Math.Min(100, limit * 5);
        var url = new Uri(Base, "api/models?search=" + Uri.EscapeDataString(query) + "&filter=lora&sort=downloads&direction=-1&limit=" +
                                ask.ToString(CultureInfo.InvariantCulture));
        using var doc = await http.GetJsonAsync(url, Token, Base, ct) ?? throw new HubException($"{LoraReference.Shown(Base)}: the model search is not there (HTTP 404)");
        if (JsonNode.Parse(doc.RootElement.GetRawText()) is not JsonArray items) throw new HubException("Hugging Face's search answer is not a JSON list");
        var hits = new List<LoraSearchHit>();
        foreach (var item in items.OfType<JsonObject>())
        {
            if ((CivitaiVersion.Str(item, "id") ?? CivitaiVersion.Str(item, "modelId")) is not { } id) continue;
            var tags = (item["tags"] as JsonArray ?? []).Select(t => t is JsonValue v && v.TryGetValue(out string? s) ? s : null).OfType<string>();
            string? baseModel = BaseModels.HuggingFaceBaseFromTags(tags);
            var f = BaseModels.FromHuggingFace(baseModel);
            if (family is not null && f != family) continue;
            hits.Add(new LoraSearchHit(HubSite.HuggingFace, "hf:" + id, id, null, baseModel, f, CivitaiVersion.Long(item, "downloads"),
                new Uri(Base, EscapePath(id)).ToString()));
            if (hits.Count == limit) break;
        }
        return hits;
    }

    static string EscapePath(string path) => string.Join('/', path.Split('/').Select(Uri.EscapeDataString));
}
