using LoraCraft.Lora;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;

namespace LoraCraft.Pipelines;

/// <summary>
/// What `generate --demo` runs on when a newcomer has no checkpoint: a tiny random-weight SD1.5
/// model (with its config folder and byte-level tokenizer) and a random LoRA, made once and
/// cached. The weights are RANDOM: the point is a real PNG through the whole pipeline, offline.
/// </summary>
public sealed record DemoAssets(string Model, string ConfigDir, string LoraDir, string LoraName)
{
    public const string DefaultPrompt = "a lighthouse on a cliff at sunset, oil painting <lora:random-style:0.8>";
    public const int Size = 256;

    public static DemoAssets Ensure(string cacheDir, TextWriter log)
    {
        Directory.CreateDirectory(cacheDir);
        var model = Path.Combine(cacheDir, "tiny-sd15-random.safetensors");
        var config = RandomCheckpoint.ConfigDirFor(model);
        if (!File.Exists(model) || !Directory.Exists(config))
        {
            log.WriteLine($"making the demo model (tiny, random weights) in {cacheDir} ...");
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
