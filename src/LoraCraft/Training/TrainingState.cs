using System.Text.Json;
using System.Text.Json.Serialization;
using LoraCraft.IO;
using static TorchSharp.torch;

namespace LoraCraft.Training;

/// <summary>
/// A resumable state (kohya `--save_state` / `--resume`): the LoRA factors and optimizer state in
/// float32 exactly as they are, and where the run was. Training draws every random number from
/// generators seeded by (seed, position), so continuing from here gives, bit for bit, what the
/// uninterrupted run gives.
/// </summary>
public sealed record TrainingStateInfo
{
    public int Version { get; init; } = 1;
    public required int Step { get; init; }
    public required int Epoch { get; init; }
    /// <summary>Batches of <see cref="Epoch"/> already used.</summary>
    public required int BatchInEpoch { get; init; }
    public required long Seed { get; init; }
    public required long OptimizerSteps { get; init; }
    public required double[] RecentLosses { get; init; }
    public required double RecentLossTotal { get; init; }
    /// <summary>Settings that must not change across a resume (network, optimizer, data, schedule).</summary>
    public required string Fingerprint { get; init; }
    public long SessionId { get; init; }
    public long TrainingStartedAt { get; init; }
}

[JsonSerializable(typeof(TrainingStateInfo))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
internal sealed partial class TrainingStateJson : JsonSerializerContext;

public static class TrainingState
{
    const string InfoFile = "state.json", LoraFile = "lora.safetensors", OptimizerFile = "optimizer.safetensors";

    public static void Save(string dir, TrainingStateInfo info, LoraNetwork network, Optimizer optimizer)
    {
        // written into a temp folder, then renamed: a half-written state is never left as the state
        var temp = dir + ".tmp-" + Environment.ProcessId;
        if (Directory.Exists(temp)) Directory.Delete(temp, true);
        Directory.CreateDirectory(temp);
        var factors = network.StateDict(ScalarType.Float32);
        try { SafetensorsWriter.Write(Path.Combine(temp, LoraFile), factors); }
        finally { foreach (var t in factors) t.Value.Dispose(); }
        SafetensorsWriter.Write(Path.Combine(temp, OptimizerFile), optimizer.State().OrderBy(k => k.Key, StringComparer.Ordinal));
        File.WriteAllText(Path.Combine(temp, InfoFile), JsonSerializer.Serialize(info, TrainingStateJson.Default.TrainingStateInfo));
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        Directory.Move(temp, dir);
    }

    public static TrainingStateInfo ReadInfo(string dir)
    {
        var path = Path.Combine(dir, InfoFile);
        if (!Directory.Exists(dir)) throw new UserErrorException($"resume: state folder not found: {dir}");
        if (!File.Exists(path)) throw new UserErrorException($"resume: {dir} is not a saved training state (no {InfoFile})");
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), TrainingStateJson.Default.TrainingStateInfo)
                   ?? throw new UserErrorException($"resume: {path} is empty");
        }
        catch (JsonException e) { throw new UserErrorException($"resume: {path} is not a valid state ({e.Message})"); }
    }

    public static void Load(string dir, TrainingStateInfo info, LoraNetwork network, Optimizer optimizer)
    {
        using (var lora = SafetensorsFile.Open(Path.Combine(dir, LoraFile)))
        {
            var tensors = lora.Tensors.ToDictionary(t => t.Name, t => lora.Load(t.Name, ScalarType.Float32));
            try { network.LoadFactors(tensors); }
            finally { foreach (var t in tensors.Values) t.Dispose(); }
        }
        using var opt = SafetensorsFile.Open(Path.Combine(dir, OptimizerFile));
        var state = opt.Tensors.ToDictionary(t => t.Name, t => opt.Load(t.Name));
        try { optimizer.LoadState(state, info.OptimizerSteps); }
        finally { foreach (var t in state.Values) t.Dispose(); }
    }
}
