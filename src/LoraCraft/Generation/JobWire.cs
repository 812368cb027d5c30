using System.Text.Json;
using System.Text.Json.Serialization;

namespace LoraCraft.Generation;

/// <summary>
/// Jobs, outputs and events as JSON, for queues whose workers run elsewhere: every type here is
/// plain data (images are base64 PNG bytes), so what a worker sends back is what it made, bit for bit.
/// </summary>
public static class JobWire
{
    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    // the events a worker sends; JobQueued and JobCompleted are the front end's own
    static readonly Dictionary<string, Type> EventTypes = new[]
    {
        typeof(JobStarted), typeof(JobPhase), typeof(JobStep), typeof(JobMessage), typeof(JobImage), typeof(JobFailed), typeof(JobCancelled),
    }.ToDictionary(t => Name(t), StringComparer.Ordinal);

    public static string Write(GenerationJob job) => JsonSerializer.Serialize(job, Json);
    public static GenerationJob ReadJob(string json) =>
        JsonSerializer.Deserialize<GenerationJob>(json, Json) ?? throw new InvalidDataException("a job that is JSON null");

    public static string Write(GenerationOutput output) => JsonSerializer.Serialize(output, Json);
    public static GenerationOutput ReadOutput(string json) =>
        JsonSerializer.Deserialize<GenerationOutput>(json, Json) ?? throw new InvalidDataException("an output that is JSON null");

    /// <summary>The wire name of an event ("step", "image" …).</summary>
    public static string Name(JobEvent e) => Name(e.GetType());

    static string Name(Type t) => t.Name.StartsWith("Job", StringComparison.Ordinal) ? t.Name[3..].ToLowerInvariant() : t.Name.ToLowerInvariant();

    public static string Write(JobEvent e) => JsonSerializer.Serialize(e, e.GetType(), Json);

    /// <summary>An event from its wire name and JSON; null for a name this version does not know.</summary>
    public static JobEvent? ReadEvent(string name, string json) =>
        EventTypes.TryGetValue(name, out var type) ? (JobEvent?)JsonSerializer.Deserialize(json, type, Json) : null;
}
