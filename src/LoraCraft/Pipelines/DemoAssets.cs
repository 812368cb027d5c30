using LoraCraft.Lora;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;

namespace LoraCraft.Pipelines;

/// <summary>
/// What `generate --demo` and `serve --demo` run on when a newcomer has no checkpoint: a tiny
/// random-weight SD1.5 model (with its config folder and byte-level tokenizer) in a checkpoints
/// folder of its own, and a random LoRA, made once and cached. The weights are RANDOM: the point
/// is a real PNG through the whole pipeline, offline.
/// </summary>
public sealed record DemoAssets(string Model, string ConfigDir, string LoraDir, string LoraName)
{
    public const string DefaultPrompt = "a lighthouse on a cliff at sunset, oil painting <lora:random-style:0.8>";
    public const int Size = 256;

    /// <summary>The folder holding the demo checkpoint (what `serve --demo` lists).</summary>
    public string CheckpointsDir => Path.GetDirectoryName(Model)!;

    public static DemoAssets Ensure(string cacheDir, TextWriter log)
    {
        var checkpoints = Path.Combine(cacheDir, "checkpoints");
        Directory.CreateDirectory(checkpoints);
        var model = Path.Combine(checkpoints, "tiny-sd15-random.safetensors");
        var config = RandomCheckpoint.ConfigDirFor(model);
        if (!File.Exists(model) || !Directory.Exists(config))
        {
            log.WriteLine($"making the demo model (tiny, random weights) in {checkpoints} ...");
            RandomCheckpoint.Make(model, RandomArchitecture.Of(RandomModelKind.Sd15, RandomModelSize.Tiny), 1);
        }
        var loraDir = Path.Combine(cacheDir, "Lora");
        var lora = Path.Combine(loraDir, "random-style.safetensors");
        if (!File.Exists(lora))
        {
            Directory.CreateDirectory(loraDir);
            using var m = CheckpointLoader.Load(model, new LoadOptions { ConfigDir = config });
            RandomLora.Make(lora, new LoraTargets(m), new RandomLoraOptions(Rank: 4, Seed: 1));
        }
        return new DemoAssets(model, config, loraDir, "random-style");
    }
}
