using System.Text.Json;
using System.Text.Json.Nodes;
using LoraCraft.Pipelines;

namespace LoraCraft.Lora;

/// <summary>
/// Writes A1111's user metadata `NAME.json` beside a LoRA, as its card editor does: the keys
/// `activation text`, `preferred weight`, `negative text`, `notes`, `description`, `sd version`
/// (keys it does not know are kept as they were). Written to a temp file, then renamed.
/// </summary>
public static class UserMetadataFile
{
    static readonly (string Json, string A1111)[] Keys =
    [
        ("activation_text", "activation text"), ("preferred_weight", "preferred weight"), ("negative_text", "negative text"),
        ("notes", "notes"), ("description", "description"), ("sd_version", "sd version"),
    ];

    /// <summary>Merges <paramref name="changes"/> (snake_case or A1111's own key names) into the file.</summary>
    public static void Write(string loraPath, JsonElement changes)
    {
        if (changes.ValueKind != JsonValueKind.Object) throw new UserErrorException("user metadata must be a JSON object");
        string path = LoraSidecars.Stem(loraPath) + LoraSidecars.UserMetadataSuffix;
        JsonObject doc;
        try { doc = File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? new JsonObject() : new JsonObject(); }
        catch (JsonException) { doc = new JsonObject(); }
        foreach (var p in changes.EnumerateObject())
        {
            var key = Keys.FirstOrDefault(k => k.Json == p.Name || k.A1111 == p.Name).A1111
                      ?? throw new UserErrorException($"unknown user metadata field '{p.Name}' (known: {string.Join(", ", Keys.Select(k => k.Json))})") { Field = p.Name };
            if (key == "preferred weight")
            {
                double w = p.Value.ValueKind == JsonValueKind.Number ? p.Value.GetDouble()
                    : p.Value.ValueKind == JsonValueKind.Null ? 0
                    : throw new UserErrorException("preferred weight must be a number") { Field = "preferred_weight" };
                if (w is < -10 or > 10 || double.IsNaN(w)) throw new UserErrorException($"preferred weight must be in [-10, 10], got {w}") { Field = "preferred_weight" };
                doc[key] = w;
            }
            else doc[key] = p.Value.ValueKind == JsonValueKind.Null ? "" : p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()
                : throw new UserErrorException($"{p.Name} must be text") { Field = p.Name };
        }
        var bytes = JsonSerializer.SerializeToUtf8Bytes(doc, new JsonSerializerOptions { WriteIndented = true });
        AtomicFile.WriteAllBytes(path, bytes);
    }
}
