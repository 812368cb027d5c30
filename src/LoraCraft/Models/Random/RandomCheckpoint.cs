using System.Globalization;
using LoraCraft.IO;
using LoraCraft.Models.Clip;
using LoraCraft.Models.Loading;
using LoraCraft.Models.UNet;
using LoraCraft.Models.Vae;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Models.Random;

public enum TensorFill { Zeros, Ones, Normal }

/// <summary>One tensor of a random checkpoint: stored name and shape, and how its values are drawn.</summary>
public sealed record PlannedTensor(string Name, long[] Shape, TensorFill Fill, double Std = 0)
{
    /// <summary>Real checkpoints ship in float16.</summary>
    public SafeDType DType => SafeDType.F16;
}

/// <summary>
/// Random-weight single-file checkpoints in the original (LDM / SGM) key layout, for demos and
/// benchmarks without downloading a model. Values are drawn so that activations stay in a sane
/// range: weights N(0, 1/fan_in), biases 0, norm scales 1, CLIP embedding tables N(0, 0.02).
/// </summary>
public static class RandomCheckpoint
{
    const double EmbeddingStd = 0.02;

    /// <summary>Every tensor of the file in write order, without any data.</summary>
    public static IReadOnlyList<PlannedTensor> Plan(RandomArchitecture a)
    {
        var plan = new List<PlannedTensor>();
        foreach (var (name, w) in new UNetModel(a.UNet).Weights())
            plan.Add(Planned(name, w.Shape) with { Name = CheckpointLayout.UNetPrefix + name });
        foreach (var (name, w) in new VaeModel(a.Vae).Weights())
            plan.Add(Planned(name, w.Shape) with { Name = CheckpointLayout.VaePrefix + name });
        foreach (var tower in a.Text)
        {
            var fused = new HashSet<string>();
            foreach (var (name, w) in new ClipTextModel(tower.Config).Weights())
            {
                var p = Planned(name, w.Shape);
                if (!tower.OpenClip)
                {
                    plan.Add(p with { Name = tower.Prefix + name });
                    continue;
                }
                var recipe = DiffusersNames.OpenClip(name) ?? throw new InvalidOperationException($"no OpenCLIP name for '{name}'");
                string key = tower.Prefix + recipe.SourceKey;
                switch (recipe.Transform)
                {
                    case WeightTransform.None:
                        plan.Add(p with { Name = key });
                        break;
                    case WeightTransform.Transpose:
                        plan.Add(p with { Name = key, Shape = [w.Shape[1], w.Shape[0]] });
                        break;
                    default: // q, k, v thirds: the fused in_proj is written once, at its first part
                        if (fused.Add(key)) plan.Add(p with { Name = key, Shape = [3 * w.Shape[0], .. w.Shape[1..]] });
                        break;
                }
            }
        }
        return plan;
    }

    /// <summary>The fill of one of our parameters, from its name and shape.</summary>
    static PlannedTensor Planned(string name, long[] shape)
    {
        if (name.EndsWith(".bias", StringComparison.Ordinal)) return new(name, shape, TensorFill.Zeros);
        // every 1-D weight of our networks is a GroupNorm / LayerNorm scale
        if (shape.Length == 1) return new(name, shape, TensorFill.Ones);
        // CLIP's token and position tables (HF names)
        if (name.StartsWith("embeddings.", StringComparison.Ordinal)) return new(name, shape, TensorFill.Normal, EmbeddingStd);
        long fanIn = shape[1..].Aggregate(1L, (n, d) => n * d);
        return new(name, shape, TensorFill.Normal, 1 / Math.Sqrt(fanIn));
    }

    /// <summary>
    /// Writes the checkpoint to <paramref name="path"/> (through a temporary file) and, for tiny
    /// models, the config folder <see cref="ConfigDirFor"/> it loads with. Values depend only on
    /// the architecture and <paramref name="seed"/>. Returns the config folder, or null.
    /// </summary>
    public static string? Make(string path, RandomArchitecture a, ulong seed)
    {
        var plan = Plan(a);
        bool tiny = a.Size == RandomModelSize.Tiny;
        // before the (possibly large) checkpoint, so that a clash fails early
        if (tiny) ConfigFolder.CheckReplaceable(ConfigDirFor(path));
        // a generator of our own: the global one belongs to whoever else runs in this process
        using var generator = new Generator(seed);
        var metadata = new Dictionary<string, string>
        {
            ["loracraft.random_weights"] = "RANDOM weights, for demos and benchmarks only",
            ["loracraft.kind"] = Id(a.Kind),
            ["loracraft.size"] = tiny ? "tiny" : "full",
            ["loracraft.seed"] = seed.ToString(CultureInfo.InvariantCulture),
        };
        SafetensorsWriter.WriteLazy(path, plan.Select(p => new LazyTensor(p.Name, p.DType, p.Shape, () => Values(p, generator))), metadata);
        if (!tiny) return null;
        var configDir = ConfigDirFor(path);
        ConfigFolder.Write(configDir, a);
        return configDir;
    }

    /// <summary>`out/model.safetensors` -> `out/model.config`: the diffusers-style config folder of a tiny model.</summary>
    public static string ConfigDirFor(string checkpointPath) => Path.ChangeExtension(checkpointPath, ".config");

    /// <summary>The `--family` name of a kind.</summary>
    public static string Id(RandomModelKind kind) => kind switch
    {
        RandomModelKind.Sd15 => "sd15",
        RandomModelKind.Sd15Inpaint => "sd15-inpaint",
        RandomModelKind.Sd2 => "sd2",
        _ => "sdxl",
    };

    static Tensor Values(PlannedTensor p, Generator generator)
    {
        if (p.Fill == TensorFill.Zeros) return zeros(p.Shape, ScalarType.Float16);
        if (p.Fill == TensorFill.Ones) return ones(p.Shape, ScalarType.Float16);
        // the scope frees the float32 draw at once, not when the GC gets to it
        using var scope = NewDisposeScope();
        var values = randn(p.Shape, generator: generator).MulInPlace(p.Std).to_type(ScalarType.Float16);
        return values.MoveToOuterDisposeScope();
    }
}
