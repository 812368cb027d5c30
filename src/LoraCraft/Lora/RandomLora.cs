using System.Globalization;
using System.Text.RegularExpressions;
using LoraCraft.IO;
using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora;

/// <summary>Which layers a random LoRA adapts.</summary>
public enum RandomLoraLayers
{
    /// <summary>q/k/v/out of every UNet attention (attn1, attn2) and text-encoder self-attention.</summary>
    Attention,
    /// <summary>Every linear and convolution weight LoRA can patch (LoCon).</summary>
    All,
}

/// <summary>Rank, alpha (default: the rank, i.e. scale 1), seed and layers of a random LoRA; metadata added to (or replacing) the written keys.</summary>
public sealed record RandomLoraOptions(int Rank, double? Alpha = null, ulong Seed = 0, RandomLoraLayers Layers = RandomLoraLayers.Attention,
                                       IReadOnlyDictionary<string, string>? Metadata = null);

/// <summary>What <see cref="RandomLora.Make"/> wrote.</summary>
public sealed record RandomLoraResult(int Modules, long Parameters, double Alpha);

/// <summary>
/// Random-weight LoRA files in kohya's format for a given model, for demos and benchmarks: every
/// key is the one kohya writes for that model's family, so the file maps back through
/// <see cref="LoraPlan.Create"/> without a miss. down ~ N(0, 1/fan_in) keeps the inner activation
/// at the input's scale; up ~ N(0, 0.01) makes the delta small but nonzero (kohya starts up at 0,
/// which would change nothing).
/// </summary>
public static partial class RandomLora
{
    const double UpStd = 0.01;

    [GeneratedRegex(@"(\.attn[12]\.(to_q|to_k|to_v|to_out\.0)|\.self_attn\.(q_proj|k_proj|v_proj|out_proj))\.weight$", RegexOptions.CultureInvariant)]
    private static partial Regex AttentionRx();

    /// <summary>The layers <paramref name="which"/> selects, in the model's order.</summary>
    public static IReadOnlyList<LoraLayer> Select(LoraTargets targets, RandomLoraLayers which) =>
        which == RandomLoraLayers.All ? targets.Layers : targets.Layers.Where(l => AttentionRx().IsMatch(l.Target.Name)).ToList();

    /// <summary>Writes the LoRA to <paramref name="path"/> (fp16); values depend only on the layers and the options.</summary>
    public static RandomLoraResult Make(string path, LoraTargets targets, RandomLoraOptions options)
    {
        if (options.Rank < 1) throw new UserErrorException($"the rank must be 1 or more, got {options.Rank}");
        double alpha = options.Alpha ?? options.Rank;
        if (!(alpha > 0) || double.IsInfinity(alpha)) throw new UserErrorException($"alpha must be a positive number, got {alpha}");
        var layers = Select(targets, options.Layers);
        long r = options.Rank;
        var tensors = new List<LazyTensor>();
        // the generator is created before any tensor is produced and used in write order only
        using var generator = new Generator(options.Seed);
        foreach (var layer in layers.OrderBy(l => l.KohyaKey, StringComparer.Ordinal))
        {
            long[] w = layer.Target.Weight.Shape;
            long fanIn = w[1..].Aggregate(1L, (a, b) => a * b);
            long[] down = [r, .. w[1..]];
            long[] up = w.Length == 4 ? [w[0], r, 1, 1] : [w[0], r];
            tensors.Add(new LazyTensor(layer.KohyaKey + ".alpha", SafeDType.F16, [], () => tensor(alpha, ScalarType.Float16)));
            tensors.Add(new LazyTensor(layer.KohyaKey + ".lora_down.weight", SafeDType.F16, down, () => Normal(down, 1 / Math.Sqrt(fanIn), generator)));
            tensors.Add(new LazyTensor(layer.KohyaKey + ".lora_up.weight", SafeDType.F16, up, () => Normal(up, UpStd, generator)));
        }
        var inv = CultureInfo.InvariantCulture;
        var metadata = new Dictionary<string, string>
        {
            ["loracraft.random_weights"] = "RANDOM weights, for demos and benchmarks only",
            ["loracraft.seed"] = options.Seed.ToString(inv),
            ["modelspec.title"] = "random LoRA (demo)",
            ["ss_output_name"] = Path.GetFileNameWithoutExtension(path),
            ["ss_network_module"] = "networks.lora",
            ["ss_network_dim"] = options.Rank.ToString(inv),
            ["ss_network_alpha"] = alpha.ToString("R", inv),
            ["ss_base_model_version"] = targets.Family switch { ModelFamily.Sd1 => "sd_v1", ModelFamily.Sd2 => "sd_v2", _ => "sdxl_base_v1-0" },
        };
        // kohya's LoCon marks convolution ranks in the network arguments
        if (options.Layers == RandomLoraLayers.All)
            metadata["ss_network_args"] = string.Create(inv, $"{{\"conv_dim\": \"{options.Rank}\", \"conv_alpha\": \"{alpha:R}\"}}");
        foreach (var (key, value) in options.Metadata ?? new Dictionary<string, string>()) metadata[key] = value;
        SafetensorsWriter.WriteLazy(path, tensors, metadata);
        long parameters = tensors.Where(t => !t.Name.EndsWith(".alpha", StringComparison.Ordinal)).Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
        return new RandomLoraResult(layers.Count, parameters, alpha);
    }

    static Tensor Normal(long[] shape, double std, Generator generator)
    {
        // the scope frees the float32 draw at once
        using var scope = NewDisposeScope();
        return randn(shape, generator: generator).MulInPlace(std).to_type(ScalarType.Float16).MoveToOuterDisposeScope();
    }
}
