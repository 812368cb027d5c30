using System.Globalization;
using System.Text.Json.Nodes;

namespace LoraCraft.Lora.Hub;

/// <summary>One file of a Civitai model version (`files[]`): `sizeKB` is rounded, so sizes are checked loosely; `hashes.SHA256` exactly.</summary>
public sealed record CivitaiFile(string Name, double? SizeKB, string? Sha256, string? DownloadUrl, bool Primary, string? Format, string? Type)
{
    public bool IsSafetensors => Format is "SafeTensor" || Name.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);
}

/// <summary>One preview image (`images[]`); videos and mature images are skipped for the card.</summary>
public sealed record CivitaiImage(string Url, string? Type, bool Mature);

/// <summary>
/// A Civitai model-version record (`/api/v1/model-versions/{id}`, `/by-hash/{hash}`), the parts
/// LoraCraft uses, with the whole record kept (<see cref="Record"/>) for the `.civitai.info` sidecar.
/// </summary>
public sealed record CivitaiVersion(
    long Id, long? ModelId, string? Name, string? ModelName, string? ModelType, string? BaseModel,
    IReadOnlyList<string> TrainedWords, IReadOnlyList<CivitaiFile> Files, IReadOnlyList<CivitaiImage> Images,
    string? DownloadUrl, JsonObject Record)
{
    /// <summary>Civitai's model types that LoraCraft loads as LoRAs.</summary>
    public static readonly string[] LoraTypes = ["LORA", "LoCon", "DoRA", "LyCORIS"];

    public static CivitaiVersion Parse(JsonObject o)
    {
        var model = o["model"] as JsonObject;
        var files = (o["files"] as JsonArray ?? []).OfType<JsonObject>().Select(f => new CivitaiFile(
            Str(f, "name") ?? "",
            Num(f, "sizeKB"),
            (f["hashes"] as JsonObject) is { } h ? Str(h, "SHA256")?.ToLowerInvariant() : null,
            Str(f, "downloadUrl"),
            f["primary"] is JsonValue p && p.TryGetValue(out bool primary) && primary,
            (f["metadata"] as JsonObject) is { } m ? Str(m, "format") : null,
            Str(f, "type"))).ToList();
        var images = (o["images"] as JsonArray ?? []).OfType<JsonObject>()
            .Where(i => Str(i, "url") is not null)
            .Select(i => new CivitaiImage(Str(i, "url")!, Str(i, "type"), Mature(i))).ToList();
        var words = (o["trainedWords"] as JsonArray ?? []).Select(w => w is JsonValue v && v.TryGetValue(out string? s) ? s?.Trim() : null)
            .OfType<string>().Where(s => s.Length > 0).ToList();
        return new CivitaiVersion(
            Long(o, "id") ?? throw new HubException("Civitai's answer has no model version id"),
            Long(o, "modelId"), Str(o, "name"), model is null ? null : Str(model, "name"), model is null ? null : Str(model, "type"),
            Str(o, "baseModel"), words, files, images, Str(o, "downloadUrl"), o);
    }

    /// <summary>The file to install: the primary one if it is a safetensors model file, else the first such file; null when none is.</summary>
    public CivitaiFile? SafetensorsFile() =>
        Files.Where(f => f.Type is null or "Model" && f.IsSafetensors).OrderByDescending(f => f.Primary).FirstOrDefault();

    /// <summary>The first still image that is not marked mature, for the card.</summary>
    public CivitaiImage? PreviewImage() => Images.FirstOrDefault(i => i.Type is null or "image" && !i.Mature);

    // nsfwLevel: 1 = PG; older records say nsfw: "None"/"Soft"/"Mature"/"X" or true/false
    static bool Mature(JsonObject image)
    {
        if (image["nsfwLevel"] is JsonValue level && level.TryGetValue(out double l)) return l > 1;
        return image["nsfw"] switch
        {
            JsonValue v when v.TryGetValue(out bool b) => b,
            JsonValue v when v.TryGetValue(out string? s) => s is not (null or "None"),
            _ => false,
        };
    }

    internal static string? Str(JsonObject o, string key) =>
        o[key] is JsonValue v && v.TryGetValue(out string? s) && !string.IsNullOrWhiteSpace(s) ? s : null;

    internal static long? Long(JsonObject o, string key) =>
        o[key] is JsonValue v && v.TryGetValue(out long n) ? n : null;

    static double? Num(JsonObject o, string key) => o[key] switch
    {
        JsonValue v when v.TryGetValue(out double d) => d,
        JsonValue v when v.TryGetValue(out string? s) && double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
        _ => null,
    };
}
