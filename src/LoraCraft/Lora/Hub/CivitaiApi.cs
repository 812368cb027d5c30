using System.Globalization;
using System.Text.Json.Nodes;
using LoraCraft.Models;

namespace LoraCraft.Lora.Hub;

/// <summary>
/// Civitai's public REST API (v1): model versions by id or by file hash, models, and the model
/// search. Shapes as documented at developer.civitai.com (`/api/v1/models`, `/api/v1/model-versions`).
/// </summary>
internal sealed class CivitaiApi(HubHttp http)
{
    Uri Base => http.Options.CivitaiBase;
    string? Token => http.Options.CivitaiToken;

    public async Task<CivitaiVersion> GetVersionAsync(long id, CancellationToken ct) =>
        await GetVersionOrNullAsync(Api($"model-versions/{id}"), ct)
        ?? throw new HubException($"Civitai has no published model version {id}");

    /// <summary>The version whose file has this hash (Civitai accepts SHA256, AutoV1/V2/V3, CRC32, BLAKE3); null when none.</summary>
    public Task<CivitaiVersion?> ByHashAsync(string hash, CancellationToken ct) =>
        GetVersionOrNullAsync(Api($"model-versions/by-hash/{Uri.EscapeDataString(hash)}"), ct);

    public async Task<JsonObject> GetModelAsync(long id, CancellationToken ct) =>
        await GetObjectAsync(Api($"models/{id}"), ct) ?? throw new HubException($"Civitai has no model {id}");

    /// <summary>The newest version of a model: the first of `modelVersions`, as Civitai orders them.</summary>
    public static long NewestVersionId(JsonObject model, long modelId) =>
        (model["modelVersions"] as JsonArray)?.OfType<JsonObject>().Select(v => CivitaiVersion.Long(v, "id")).FirstOrDefault(v => v is not null)
        ?? throw new HubException($"Civitai model {modelId} has no published version");

    /// <summary>
    /// The version record with the model's description and tags added under `model` when the
    /// version record lacks them (Civitai Helper's info files carry the model description too).
    /// </summary>
    public static void AddModelDetails(CivitaiVersion version, JsonObject? model)
    {
        if (model is null) return;
        if (version.Record["model"] is not JsonObject target)
            version.Record["model"] = target = new JsonObject();
        foreach (var key in new[] { "name", "type", "description", "tags" })
            if (target[key] is null && model[key] is { } value) target[key] = value.DeepClone();
    }

    /// <summary>LoRA models matching <paramref name="query"/> (Civitai's full-text search), best first.</summary>
    public async Task<List<LoraSearchHit>> SearchAsync(string query, ModelFamily? family, int limit, CancellationToken ct)
    {
        var q = new List<string> { "query=" + Uri.EscapeDataString(query), "limit=" + limit.ToString(CultureInfo.InvariantCulture) };
        q.AddRange(CivitaiVersion.LoraTypes.Where(t => t != "LyCORIS").Select(t => "types=" + t));
        if (family is { } f) q.AddRange(BaseModels.CivitaiFilter(f).Select(b => "baseModels=" + Uri.EscapeDataString(b)));
        var answer = await GetObjectAsync(Api("models?" + string.Join('&', q)), ct)
                     ?? throw new HubException($"{LoraReference.Shown(Base)}: the model search is not there (HTTP 404)");
        var hits = new List<LoraSearchHit>();
        foreach (var item in (answer["items"] as JsonArray ?? []).OfType<JsonObject>())
        {
            if (CivitaiVersion.Long(item, "id") is not { } modelId) continue;
            var versions = (item["modelVersions"] as JsonArray ?? []).OfType<JsonObject>().ToList();
            // the newest version of the family asked for (a model may have SD1 and SDXL versions)
            var version = versions.FirstOrDefault(v => family is null || BaseModels.FromCivitai(CivitaiVersion.Str(v, "baseModel")) == family) ?? versions.FirstOrDefault();
            if (version is null || CivitaiVersion.Long(version, "id") is not { } versionId) continue;
            string? baseModel = CivitaiVersion.Str(version, "baseModel");
            long? downloads = (item["stats"] as JsonObject) is { } stats ? CivitaiVersion.Long(stats, "downloadCount") : null;
            hits.Add(new LoraSearchHit(HubSite.Civitai, $"civitai:{versionId}", CivitaiVersion.Str(item, "name") ?? $"model {modelId}",
                CivitaiVersion.Str(version, "name"), baseModel, BaseModels.FromCivitai(baseModel), downloads,
                new Uri(Base, $"models/{modelId}?modelVersionId={versionId}").ToString()));
        }
        return hits;
    }

    /// <summary>Civitai's download link of a version's primary file, for records that lack one.</summary>
    public Uri DownloadUrl(long versionId) => new(Base, $"api/download/models/{versionId}");

    Uri Api(string pathAndQuery) => new(Base, "api/v1/" + pathAndQuery);

    async Task<CivitaiVersion?> GetVersionOrNullAsync(Uri url, CancellationToken ct) =>
        await GetObjectAsync(url, ct) is { } o ? CivitaiVersion.Parse(o) : null;

    async Task<JsonObject?> GetObjectAsync(Uri url, CancellationToken ct)
    {
        using var doc = await http.GetJsonAsync(url, Token, Base, ct);
        if (doc is null) return null;
        return JsonNode.Parse(doc.RootElement.GetRawText()) as JsonObject
               ?? throw new HubException($"{LoraReference.Shown(url)}: the answer is not a JSON object");
    }
}
