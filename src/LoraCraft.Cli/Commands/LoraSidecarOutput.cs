using System.Text.Json;
using LoraCraft.Lora;

namespace LoraCraft.Cli.Commands;

/// <summary>How `lora info` shows the files beside a LoRA (<see cref="LoraSidecars"/>), in text and JSON.</summary>
internal static class LoraSidecarOutput
{
    const int ShownLength = 100;

    /// <summary>What Civitai's info file and A1111's user metadata add to `info`'s text (nothing when absent).</summary>
    public static void Lines(LoraSidecars side, Action<string, string> line)
    {
        if (side.BaseModel is { } b) line("base model", $"{b} (from {Path.GetFileName(side.BaseModelSource)})");
        if (side.Civitai is { } c)
            line("civitai", string.Join(" / ", new[] { c.ModelName, c.VersionName }.OfType<string>()) + (c.VersionId is { } id ? $" (civitai:{id})" : ""));
        if (side.UserMetadata is { } u)
        {
            if (u.PreferredWeight is { } w) line("weight", TextFormat.Num(w));
            if (u.NegativeText is { } neg) line("negative", TextFormat.Shown(neg, ShownLength));
            if (u.Notes is { } notes) line("notes", TextFormat.Shown(notes, ShownLength));
        }
        if ((side.UserMetadata?.Description ?? side.Civitai?.Description) is { } d) line("description", TextFormat.Shown(d, ShownLength));
        line("preview", side.PreviewPath ?? "none");
        foreach (var problem in side.Problems) line("unreadable", problem);
    }

    /// <summary>The sidecars in `info --json`, as read (null where absent).</summary>
    public static void Json(Utf8JsonWriter json, LoraSidecars side)
    {
        json.WriteStartObject("sidecars");
        json.WriteString("civitai_info", side.CivitaiInfoPath);
        if (side.Civitai is { } c)
        {
            json.WriteStartObject("civitai");
            if (c.VersionId is { } v) json.WriteNumber("version_id", v); else json.WriteNull("version_id");
            if (c.ModelId is { } m) json.WriteNumber("model_id", m); else json.WriteNull("model_id");
            json.WriteString("model", c.ModelName);
            json.WriteString("version", c.VersionName);
            json.WriteString("type", c.ModelType);
            json.WriteString("base_model", c.BaseModel);
            json.WriteStartArray("trained_words");
            foreach (var w in c.TrainedWords) json.WriteStringValue(w);
            json.WriteEndArray();
            json.WriteString("description", c.Description);
            json.WriteEndObject();
        }
        else json.WriteNull("civitai");
        json.WriteString("user_metadata_file", side.UserMetadataPath);
        if (side.UserMetadata is { } u)
        {
            json.WriteStartObject("user_metadata");
            json.WriteString("description", u.Description);
            json.WriteString("sd_version", u.SdVersion);
            json.WriteString("activation_text", u.ActivationText);
            if (u.PreferredWeight is { } w) json.WriteNumber("preferred_weight", w); else json.WriteNull("preferred_weight");
            json.WriteString("negative_text", u.NegativeText);
            json.WriteString("notes", u.Notes);
            json.WriteEndObject();
        }
        else json.WriteNull("user_metadata");
        json.WriteString("preview", side.PreviewPath);
        json.WriteStartArray("problems");
        foreach (var p in side.Problems) json.WriteStringValue(p);
        json.WriteEndArray();
        json.WriteEndObject();
    }
}
