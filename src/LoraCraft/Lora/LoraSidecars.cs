using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace LoraCraft.Lora;

/// <summary>
/// What Civitai Helper's `NAME.civitai.info` says about a LoRA: the model-version record Civitai
/// serves (`/api/v1/model-versions/{id}`), reduced to what a LoRA card shows.
/// </summary>
public sealed record CivitaiSidecar(
    long? VersionId, long? ModelId, string? ModelName, string? VersionName, string? ModelType,
    string? BaseModel, IReadOnlyList<string> TrainedWords, string? Description);

/// <summary>
/// A1111's user metadata, `NAME.json` beside the file, as its LoRA card editor writes it:
/// `description`, `sd version`, `activation text`, `preferred weight`, `negative text`, `notes`.
/// Absent keys are null; a preferred weight of 0 means "none" in A1111 and is kept as null here.
/// </summary>
public sealed record A1111UserMetadata(
    string? Description, string? SdVersion, string? ActivationText, double? PreferredWeight,
    string? NegativeText, string? Notes);

/// <summary>
/// The files beside a LoRA that other tools write and read: Civitai Helper's
/// `NAME.civitai.info`, A1111's `NAME.json` and the card preview image A1111 looks for
/// (`NAME.png`, `NAME.preview.png`, then the same for jpg, jpeg, webp, gif). A missing or damaged
/// sidecar is just absent here (its problem is in <see cref="Problems"/>), never an error.
/// </summary>
public sealed record LoraSidecars(
    string? CivitaiInfoPath, CivitaiSidecar? Civitai,
    string? UserMetadataPath, A1111UserMetadata? UserMetadata,
    string? PreviewPath, IReadOnlyList<string> Problems)
{
    public const string CivitaiInfoSuffix = ".civitai.info";
    public const string UserMetadataSuffix = ".json";
    public const string PreviewSuffix = ".preview.png";
    static readonly string[] PreviewExtensions = ["png", "jpg", "jpeg", "webp", "gif"];

    /// <summary>`DIR/NAME` for `DIR/NAME.safetensors`: the stem every sidecar name starts with.</summary>
    public static string Stem(string loraPath) =>
        Path.Combine(Path.GetDirectoryName(loraPath) ?? "", Path.GetFileNameWithoutExtension(loraPath));

    /// <summary>The base model a user or Civitai gave: A1111's `sd version` when set, else Civitai's `baseModel`.</summary>
    public string? BaseModel => UserSdVersion ?? Civitai?.BaseModel;

    /// <summary>The sidecar <see cref="BaseModel"/> comes from.</summary>
    public string? BaseModelSource => UserSdVersion is not null ? UserMetadataPath : Civitai?.BaseModel is not null ? CivitaiInfoPath : null;

    string? UserSdVersion => UserMetadata?.SdVersion is { Length: > 0 } v && v != "Unknown" ? v : null;

    public static LoraSidecars Read(string loraPath)
    {
        string stem = Stem(loraPath);
        var problems = new List<string>();
        string info = stem + CivitaiInfoSuffix, user = stem + UserMetadataSuffix;
        var civitai = ReadJson(info, problems) is { } c ? ParseCivitai(c) : null;
        var metadata = ReadJson(user, problems) is { } u ? ParseUser(u) : null;
        return new LoraSidecars(civitai is null ? null : info, civitai, metadata is null ? null : user, metadata, FindPreview(stem), problems);
    }

    /// <summary>
    /// Trigger words from the sidecars: `NAME.civitai.info`, then `NAME.json`; in each, an
    /// `activation text` (comma-separated) wins over a `trainedWords` list. Null when neither has any.
    /// </summary>
    public static LoraTriggers? Triggers(string loraPath)
    {
        string stem = Stem(loraPath);
        foreach (var sidecar in new[] { stem + CivitaiInfoSuffix, stem + UserMetadataSuffix })
        {
            if (ReadJson(sidecar, null) is not { } root) continue;
            var found = new List<string>();
            if (String(root, "activation text") is { } text) found.AddRange(SplitWords(text));
            else found.AddRange(Strings(root, "trainedWords"));
            if (found.Count > 0) return new LoraTriggers(Path.GetFileName(sidecar), found.Distinct().ToList());
        }
        return null;
    }

    /// <summary>The card image A1111 would show, in its search order; null when there is none.</summary>
    public static string? FindPreview(string stem)
    {
        foreach (var ext in PreviewExtensions)
            foreach (var candidate in new[] { $"{stem}.{ext}", $"{stem}.preview.{ext}" })
                if (File.Exists(candidate)) return candidate;
        return null;
    }

    /// <summary>Comma-separated words, trimmed, empty ones and repeats dropped.</summary>
    public static List<string> SplitWords(string phrase) =>
        phrase.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct().ToList();

    /// <summary>Civitai descriptions are HTML: the text of it on one paragraph per block, entities decoded.</summary>
    public static string PlainText(string html)
    {
        var text = Regex.Replace(html, @"<\s*(br|/p|/h[1-6]|/li|/div)\s*/?>", "\n", RegexOptions.IgnoreCase);
        text = Regex.Replace(text, "<[^>]*>", "");
        text = WebUtility.HtmlDecode(text);
        text = Regex.Replace(text, @"[ \t\u00A0]+", " ");
        text = Regex.Replace(text, @"\s*\n\s*", "\n");
        return text.Trim();
    }

    static CivitaiSidecar ParseCivitai(JsonElement root)
    {
        var model = root.TryGetProperty("model", out var m) && m.ValueKind == JsonValueKind.Object ? m : default;
        // the model's own description is what its page shows; the version's is a changelog
        string? description = model.ValueKind == JsonValueKind.Object ? String(model, "description") : null;
        description ??= String(root, "description");
        return new CivitaiSidecar(
            Long(root, "id"), Long(root, "modelId"),
            model.ValueKind == JsonValueKind.Object ? String(model, "name") : null,
            String(root, "name"),
            model.ValueKind == JsonValueKind.Object ? String(model, "type") : null,
            String(root, "baseModel"),
            Strings(root, "trainedWords").Distinct().ToList(),
            description is null ? null : PlainText(description) is { Length: > 0 } plain ? plain : null);
    }

    static A1111UserMetadata ParseUser(JsonElement root)
    {
        double? weight = root.TryGetProperty("preferred weight", out var w) ? w.ValueKind switch
        {
            JsonValueKind.Number => w.GetDouble(),
            JsonValueKind.String when double.TryParse(w.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
            _ => null,
        } : null;
        return new A1111UserMetadata(
            String(root, "description"), String(root, "sd version"), String(root, "activation text"),
            weight is 0 ? null : weight, String(root, "negative text"), String(root, "notes"));
    }

    /// <summary>The file's top-level JSON object; null (with the reason in <paramref name="problems"/>) when absent or unreadable.</summary>
    static JsonElement? ReadJson(string path, List<string>? problems)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (doc.RootElement.ValueKind == JsonValueKind.Object) return doc.RootElement.Clone();
            problems?.Add($"{path}: not a JSON object");
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            problems?.Add($"{path}: {e.Message}");
        }
        return null;
    }

    static string? String(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Trim() is { Length: > 0 } s ? s : null;

    static long? Long(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long n) ? n : null;

    static IEnumerable<string> Strings(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array
            ? v.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => e.GetString()!.Trim()).Where(s => s.Length > 0).ToList()
            : [];
}
